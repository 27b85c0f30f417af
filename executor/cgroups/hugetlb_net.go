package cgroups

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// pageSizeRe is a huge page size as the hugetlb controller names its files
// ("2MB", "1GB", "64KB"): nothing else reaches a file name.
var pageSizeRe = regexp.MustCompile(`^[0-9]+[KMG]B$`)

// hugetlbFiles returns, per limit of hl, the file that sets it: suffix
// after "hugetlb.<size>." (v1 "limit_in_bytes", v2 "max"), as runc writes
// them.
func hugetlbFiles(hl []specs.LinuxHugepageLimit, suffix string) (names, values []string, err error) {
	for i, l := range hl {
		if !pageSizeRe.MatchString(l.Pagesize) {
			return nil, nil, fmt.Errorf("linux.resources.hugepageLimits[%d].pageSize %q is not a huge page size (such as 2MB or 1GB)", i, l.Pagesize)
		}
		names = append(names, "hugetlb."+l.Pagesize+"."+suffix)
		values = append(values, strconv.FormatUint(l.Limit, 10))
	}
	return names, values, nil
}

// setHugetlb writes the huge page limits to dir. A page size the kernel
// has no file for (not a size this machine has) is an error naming it.
func setHugetlb(dir string, hl []specs.LinuxHugepageLimit, suffix string) error {
	names, values, err := hugetlbFiles(hl, suffix)
	if err != nil {
		return err
	}
	for i, n := range names {
		if err := writeFile(dir, n, values[i]); err != nil {
			return fmt.Errorf("linux.resources.hugepageLimits: %w", err)
		}
	}
	return nil
}

// setNetworkV1 writes linux.resources.network: the class ID to net_cls
// and each interface priority to net_prio (need finds their directories),
// one entry per write, as the kernel reads them.
func setNetworkV1(n *specs.LinuxNetwork, need func(string) (string, error)) error {
	if n.ClassID != nil {
		dir, err := need("net_cls")
		if err != nil {
			return fmt.Errorf("linux.resources.network.classID: %w", err)
		}
		if err := writeFile(dir, "net_cls.classid", strconv.FormatUint(uint64(*n.ClassID), 10)); err != nil {
			return err
		}
	}
	if len(n.Priorities) > 0 {
		dir, err := need("net_prio")
		if err != nil {
			return fmt.Errorf("linux.resources.network.priorities: %w", err)
		}
		for _, p := range n.Priorities {
			if err := writeFile(dir, "net_prio.ifpriomap", p.Name+" "+strconv.FormatUint(uint64(p.Priority), 10)); err != nil {
				return err
			}
		}
	}
	return nil
}

// errNetworkV2: cgroup v2 has no net_cls or net_prio controller.
var errNetworkV2 = errors.New("linux.resources.network needs cgroup v1's net_cls and net_prio controllers, which cgroup v2 does not have: leave it out (classify traffic with an eBPF program or nftables' cgroupv2 match instead)")

func hasNetwork(n *specs.LinuxNetwork) bool {
	return n != nil && (n.ClassID != nil || len(n.Priorities) > 0)
}
