package promexport

import "github.com/prometheus/client_golang/prometheus"

// BrokerCounters are `copyscope broker`'s own health counters: what
// recovery cut off at startup and what the connection limits did.
type BrokerCounters struct {
	RecoveryTruncations  uint64 // cuts recovery made (torn or corrupt tails, unchained segments)
	RecoveryDroppedBytes uint64 // bytes they dropped, preallocated zeros excluded
	ConnectionsOpen      int
	ConnectionsRefused   uint64
	IdleClosed           uint64
	RequestTimeouts      uint64
	BufferWaits          uint64
	DataDirLost          bool // the data directory was removed or replaced: produce refused
}

var (
	descTruncations = prometheus.NewDesc("copyscope_broker_recovery_truncations_total", "Cuts the log's recovery made at startup: torn or corrupt segment tails and segments that no longer followed on (each is also logged).", nil, nil)
	descDropBytes   = prometheus.NewDesc("copyscope_broker_recovery_dropped_bytes_total", "Bytes those cuts dropped (preallocated zero space excluded).", nil, nil)
	descConnsOpen   = prometheus.NewDesc("copyscope_broker_connections", "Client connections open (each holds one OS thread).", nil, nil)
	descRefused     = prometheus.NewDesc("copyscope_broker_connections_refused_total", "Connections closed at accept by --max-connections or --max-connections-per-ip.", nil, nil)
	descCut         = prometheus.NewDesc("copyscope_broker_connections_cut_total", "Connections closed by a deadline: idle (--idle-timeout) or request (--request-timeout).", []string{"reason"}, nil)
	descBufWaits    = prometheus.NewDesc("copyscope_broker_request_buffer_waits_total", "Requests that waited for --max-buffered-request-bytes.", nil, nil)
	descDirLost     = prometheus.NewDesc("copyscope_broker_data_dir_lost", "1 once the data directory was removed or replaced while running (produce refused).", nil, nil)
)

// BrokerCollector exposes BrokerCounters read at each scrape.
type BrokerCollector struct{ read func() BrokerCounters }

// NewBrokerCollector collects what read returns.
func NewBrokerCollector(read func() BrokerCounters) *BrokerCollector {
	return &BrokerCollector{read: read}
}

// Describe is unchecked: the series are fixed but sent as const metrics.
func (b *BrokerCollector) Describe(chan<- *prometheus.Desc) {}

// Collect sends the counters.
func (b *BrokerCollector) Collect(ch chan<- prometheus.Metric) {
	c := b.read()
	send := func(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, t, v, labels...)
	}
	send(descTruncations, prometheus.CounterValue, float64(c.RecoveryTruncations))
	send(descDropBytes, prometheus.CounterValue, float64(c.RecoveryDroppedBytes))
	send(descConnsOpen, prometheus.GaugeValue, float64(c.ConnectionsOpen))
	send(descRefused, prometheus.CounterValue, float64(c.ConnectionsRefused))
	send(descCut, prometheus.CounterValue, float64(c.IdleClosed), "idle")
	send(descCut, prometheus.CounterValue, float64(c.RequestTimeouts), "request")
	send(descBufWaits, prometheus.CounterValue, float64(c.BufferWaits))
	lost := 0.0
	if c.DataDirLost {
		lost = 1
	}
	send(descDirLost, prometheus.GaugeValue, lost)
}
