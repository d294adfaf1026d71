package metrics

// Derived values of a Record: every output (TUI columns, plain lines,
// watch's table, bench's report) computes them here, so they agree. Each
// returns ok=false when the fields it needs were not measured or the
// interval is empty; the caller then shows the value as absent.

// PerSecond divides one of the record's counters by its measured interval.
func (r Record) PerSecond(p *uint64) (float64, bool) {
	if p == nil || r.IntervalS <= 0 {
		return 0, false
	}
	return float64(*p) / r.IntervalS, true
}

// CPUPercent is the subject's CPU time as a percentage of one core.
func (r Record) CPUPercent() (float64, bool) {
	v, ok := r.PerSecond(r.CPUNs)
	return v / 1e9 * 100, ok
}

// CPUSecondsPerGB is CPU time per GB (1e9 bytes) delivered.
func (r Record) CPUSecondsPerGB() (float64, bool) {
	if r.CPUNsPerGB == nil {
		return 0, false
	}
	return *r.CPUNsPerGB / 1e9, true
}

// SyscallsPerMB is syscalls per MB (1e6 bytes) delivered; absent while
// nothing was delivered.
func (r Record) SyscallsPerMB() (float64, bool) {
	if r.Syscalls == nil || r.DeliveredBytes == nil || *r.DeliveredBytes == 0 {
		return 0, false
	}
	return float64(*r.Syscalls) / (float64(*r.DeliveredBytes) / 1e6), true
}

// SentCopiesPerByte is the file->socket flow's CPU copies per byte sent
// (copies_per_sent_byte); absent when nothing was sent.
func (r Record) SentCopiesPerByte() (float64, bool) { return opt(r.CopiesPerSentByte) }

// ReceivedCopiesPerByte is the socket->file flow's CPU copies per byte
// received (copies_per_received_byte); absent when nothing was received.
func (r Record) ReceivedCopiesPerByte() (float64, bool) { return opt(r.CopiesPerReceivedByte) }

func opt(p *float64) (float64, bool) {
	if p == nil {
		return 0, false
	}
	return *p, true
}

// CtxPerSecond is the voluntary and involuntary context switches per second.
func (r Record) CtxPerSecond() (vol, invol float64, ok bool) {
	vol, okv := r.PerSecond(r.CtxSwitchesVol)
	invol, oki := r.PerSecond(r.CtxSwitchesInvol)
	return vol, invol, okv && oki
}

// ZerocopyCopiedPercent is the share of MSG_ZEROCOPY / SEND_ZC bytes the
// kernel copied anyway; absent when nothing was sent that way.
func (r Record) ZerocopyCopiedPercent() (float64, bool) {
	if r.ZerocopyBytes == nil || *r.ZerocopyBytes == 0 {
		return 0, false
	}
	var c uint64
	if r.ZerocopyCopiedBytes != nil {
		c = *r.ZerocopyCopiedBytes
	}
	return 100 * float64(c) / float64(*r.ZerocopyBytes), true
}
