package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"text/tabwriter"

	"github.com/promshard/promshard"
	"github.com/promshard/promshard/shard"
)

// writeReport prints a reshard's report for a person: the job, its counts,
// one line per member with its targets and file, and the reloads that
// failed.
func writeReport(w io.Writer, r promshard.Report) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	asg := r.Assignment
	if asg == nil {
		fmt.Fprintf(tw, "job %s: no assignment (%v)\n", r.Job, r.Err)
		return tw.Flush()
	}
	fmt.Fprintf(tw, "job %s: %d targets on %d collectors (ring %s, replicas %d)\n  COLLECTOR\tTARGETS\tFILE\n",
		r.Job, asg.Targets, len(asg.Members), asg.Ring, asg.Replicas)
	for _, m := range asg.Members {
		fmt.Fprintf(tw, "  %s\t%d\t%s\n", m.ID, asg.Count(m.ID), cmp.Or(r.Files[m.ID], "-"))
	}
	if failed := r.Reloads.Failed(); len(failed) > 0 {
		fmt.Fprintf(tw, "  reload failed for %v\n", failed)
	}
	return tw.Flush()
}

// writeSimulations prints the simulation of each job: as tables for a
// person, by job name (format "table" or ""), or as JSON ("json").
func writeSimulations(w io.Writer, sims map[string]*shard.Simulation, format string) error {
	switch format {
	case "json":
		return json.NewEncoder(w).Encode(sims)
	case "table", "":
	default:
		return fmt.Errorf("format %q: want table or json", format)
	}
	for _, job := range slices.Sorted(maps.Keys(sims)) {
		if err := writeSimulation(w, job, sims[job]); err != nil {
			return err
		}
	}
	return nil
}

// writeSimulation prints a simulation for a person: the balance before and
// after, the moves per pair of collectors, and every collector's counts.
func writeSimulation(w io.Writer, job string, sim *shard.Simulation) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "job %s: %d targets, %d would move\n", job, sim.Targets, sim.Moved)
	fmt.Fprintf(tw, "  before: %d collectors, max %d, mean %.1f, max/mean %.3f\n", sim.Before.Members, sim.Before.Max,
		sim.Before.Mean, sim.Before.MaxOverMean())
	fmt.Fprintf(tw, "  after:  %d collectors, max %d, mean %.1f, max/mean %.3f\n", sim.After.Members, sim.After.Max,
		sim.After.Mean, sim.After.MaxOverMean())
	if sim.Capacity > 0 {
		fmt.Fprintf(tw, "  capacity %d targets per collector: %d unplaced\n", sim.Capacity, sim.Unplaced)
	}
	if need := sim.CollectorsNeeded; need > 0 {
		verdict := "enough"
		if sim.After.Members < need {
			verdict = "too few: losing one more would overload the rest"
		}
		fmt.Fprintf(tw, "  sizing: the measured series need %d collectors with headroom for a loss; after: %d (%s)\n",
			need, sim.After.Members, verdict)
	}
	fmt.Fprintf(tw, "  FROM\tTO\tTARGETS\n")
	for _, m := range sim.Moves {
		fmt.Fprintf(tw, "  %s\t%s\t%d\n", cmp.Or(m.From, "(new replica)"), cmp.Or(m.To, "(dropped)"), m.Targets)
	}
	fmt.Fprintf(tw, "  COLLECTOR\tBEFORE\tAFTER\tSTATE\n")
	for _, l := range sim.Loads {
		fmt.Fprintf(tw, "  %s\t%d\t%d\t%s\n", l.ID, l.Before, l.After, l.State)
	}
	return tw.Flush()
}
