package kafka

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// AlterConfigs (key 33), v0-v2, and IncrementalAlterConfigs (key 44),
// v0-v1. Every config is fixed when the broker starts, so a request that
// would change one is refused with INVALID_CONFIG naming the flag to use;
// setting a config to the value it already has succeeds, so tools that
// "ensure" a config keep working.

// alterOne is one config a request wants: set to val, or deleted.
type alterOne struct {
	name string
	val  *string
	del  bool
}

func (s *Server) alterConfigs(req *kmsg.AlterConfigsRequest) *kmsg.AlterConfigsResponse {
	resp := kmsg.NewPtrAlterConfigsResponse()
	for _, r := range req.Resources {
		var want []alterOne
		for _, c := range r.Configs {
			want = append(want, alterOne{name: c.Name, val: c.Value})
		}
		rr := kmsg.NewAlterConfigsResponseResource()
		rr.ResourceType, rr.ResourceName = r.ResourceType, r.ResourceName
		if code, msg := s.checkAlter(r.ResourceType, r.ResourceName, want); code != 0 {
			rr.ErrorCode, rr.ErrorMessage = code, strp(msg)
		}
		resp.Resources = append(resp.Resources, rr)
	}
	return resp
}

func (s *Server) incrementalAlterConfigs(req *kmsg.IncrementalAlterConfigsRequest) *kmsg.IncrementalAlterConfigsResponse {
	resp := kmsg.NewPtrIncrementalAlterConfigsResponse()
	for _, r := range req.Resources {
		var want []alterOne
		for _, c := range r.Configs {
			want = append(want, alterOne{name: c.Name, val: c.Value, del: c.Op != kmsg.IncrementalAlterConfigOpSet})
		}
		rr := kmsg.NewIncrementalAlterConfigsResponseResource()
		rr.ResourceType, rr.ResourceName = r.ResourceType, r.ResourceName
		if code, msg := s.checkAlter(r.ResourceType, r.ResourceName, want); code != 0 {
			rr.ErrorCode, rr.ErrorMessage = code, strp(msg)
		}
		resp.Resources = append(resp.Resources, rr)
	}
	return resp
}

// checkAlter accepts only configs set to the value they have.
func (s *Server) checkAlter(typ kmsg.ConfigResourceType, name string, want []alterOne) (int16, string) {
	entries, code, msg := s.configsOf(typ, name)
	if code != 0 {
		return code, msg
	}
	for _, w := range want {
		i := -1
		for j, e := range entries {
			if e.name == w.name {
				i = j
			}
		}
		switch {
		case i < 0:
			return kerr.InvalidConfig.Code, "unknown config " + w.name + " (DescribeConfigs lists the ones this broker has)"
		case w.del || w.val == nil || *w.val != entries[i].val:
			s.logf("refused to alter %s of %s %q: %s", w.name, typ, name, entries[i].readOnly())
			return kerr.InvalidConfig.Code, entries[i].readOnly()
		}
	}
	return 0, ""
}
