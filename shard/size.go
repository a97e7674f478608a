package shard

// CollectorsNeeded is how many members a load needs within a capacity per
// member, plus headroom for the biggest loss the placement plans for: one
// member, or, when members span several failure domains, the biggest
// domain. load is the total cost with every replica counted (the sum of
// [Assignment.Cost]); zero load or capacity gives 0 (unknown).
func CollectorsNeeded(load, capacity uint64, members []Member) int {
	if load == 0 || capacity == 0 {
		return 0
	}
	domains := map[string]int{}
	for _, m := range members {
		domains[m.Domain]++
	}
	headroom := 1
	if len(domains) > 1 {
		for _, n := range domains {
			headroom = max(headroom, n)
		}
	}
	return int((load+capacity-1)/capacity) + headroom
}
