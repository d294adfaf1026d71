package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/copyscope/copyscope/probes"
)

func newDoctorCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Show what this kernel and these privileges allow, and how to fix what is missing",
		Long: `doctor checks the kernel version, BTF, lockdown, this process's capabilities,
tracefs, every tracepoint the probes use (it loads and attaches a tiny
program to prove it), tp_btf, kprobe and fentry (informational: copyscope
never needs them) and the BPF sysctls, then says which metrics will be exact
(eBPF), estimated (/proc) or missing, each with a one-line fix.

Exit status 2 when eBPF mode is impossible (copyscope then falls back to
/proc estimates).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rep := probes.Diagnose()
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				enc.SetEscapeHTML(false)
				if err := enc.Encode(rep); err != nil {
					return fmt.Errorf("write JSON report: %w", err)
				}
			} else if err := writeDoctorTable(out, rep); err != nil {
				return fmt.Errorf("write report: %w", err)
			}
			if !rep.EBPFPossible {
				return &exitError{code: 2, err: errors.New(rep.Why)}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

// writeDoctorTable prints the report as aligned plain-text tables, each
// fix on its own line under what it fixes.
func writeDoctorTable(w io.Writer, rep probes.Report) error {
	mark := func(status probes.Status) string {
		switch status {
		case probes.StatusOK:
			return "ok"
		case probes.StatusFail:
			return "FAIL"
		case probes.StatusWarn:
			return "warn"
		}
		return "info"
	}
	quality := func(q probes.Quality) string {
		switch q {
		case probes.QualityExact:
			return "ok"
		case probes.QualityMissing:
			return "FAIL"
		}
		return "warn"
	}
	section := func(header string, rows [][]string, fixes []string) error {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, header)
		for i, r := range rows {
			fmt.Fprintln(tw, strings.Join(r, "\t"))
			if fixes[i] != "" {
				// In the last column, which tabwriter does not pad, so a
				// long fix does not widen the table.
				fmt.Fprintf(tw, "%sfix: %s\n", strings.Repeat("\t", len(r)-1), fixes[i])
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		_, err := fmt.Fprintln(w)
		return err
	}
	var rows [][]string
	var fixes []string
	for _, c := range rep.Checks {
		rows = append(rows, []string{c.Name, mark(c.Status), c.Value})
		fixes = append(fixes, c.Fix)
	}
	if err := section("CHECK\t\tVALUE", rows, fixes); err != nil {
		return err
	}
	rows, fixes = nil, nil
	for _, t := range rep.Tracepoints {
		need := "optional"
		if t.Required {
			need = "required"
		}
		feeds := strings.Join(t.Feeds, ",")
		if feeds == "" {
			feeds = "-"
		}
		rows = append(rows, []string{t.Tracepoint.Name(), mark(t.Status), t.Attach, need, t.Exists, feeds})
		fixes = append(fixes, t.Fix)
	}
	if err := section("TRACEPOINT\t\tATTACH\tNEED\tEXISTS\tFEEDS", rows, fixes); err != nil {
		return err
	}
	rows, fixes = nil, nil
	for _, m := range rep.Metrics {
		rows = append(rows, []string{m.Metric, quality(m.Status), string(m.Status) + " (" + m.Source + ")"})
		fixes = append(fixes, m.Fix)
	}
	if err := section("METRIC\t\tHOW", rows, fixes); err != nil {
		return err
	}
	if rep.EBPFPossible {
		_, err := fmt.Fprintln(w, "eBPF mode available: exact counts (watch --mode auto uses ebpf)")
		return err
	}
	_, err := fmt.Fprintf(w, "%s\nwatch --mode auto falls back to /proc estimates\n", rep.Why)
	return err
}
