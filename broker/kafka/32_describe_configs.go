package kafka

import (
	"slices"

	"github.com/copyscope/copyscope/broker/log"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DescribeConfigs (key 32), v0-v4: the configs of topics and of broker 0
// (resource name "" or "0"), all read-only, with documentation (v3+)
// naming the flag that sets each.

func (s *Server) describeConfigs(req *kmsg.DescribeConfigsRequest) *kmsg.DescribeConfigsResponse {
	resp := kmsg.NewPtrDescribeConfigsResponse()
	for _, r := range req.Resources {
		rr := kmsg.NewDescribeConfigsResponseResource()
		rr.ResourceType, rr.ResourceName = r.ResourceType, r.ResourceName
		entries, code, msg := s.configsOf(r.ResourceType, r.ResourceName)
		if code != 0 {
			rr.ErrorCode, rr.ErrorMessage = code, strp(msg)
			resp.Resources = append(resp.Resources, rr)
			continue
		}
		source := kmsg.ConfigSourceDefaultConfig
		if r.ResourceType == kmsg.ConfigResourceTypeBroker {
			source = kmsg.ConfigSourceStaticBrokerConfig
		}
		for _, e := range entries {
			if r.ConfigNames != nil && !slices.Contains(r.ConfigNames, e.name) {
				continue
			}
			rc := kmsg.NewDescribeConfigsResponseResourceConfig()
			rc.Name, rc.Value, rc.ReadOnly, rc.IsDefault = e.name, strp(e.val), true, source == kmsg.ConfigSourceDefaultConfig
			rc.Source, rc.ConfigType = source, e.typ
			if req.IncludeDocumentation {
				rc.Documentation = strp(e.readOnly() + docSuffix(e.doc))
			}
			if req.IncludeSynonyms {
				rc.ConfigSynonyms = []kmsg.DescribeConfigsResponseResourceConfigConfigSynonym{{Name: e.name, Value: strp(e.val), Source: source}}
			}
			rr.Configs = append(rr.Configs, rc)
		}
		resp.Resources = append(resp.Resources, rr)
	}
	return resp
}

func docSuffix(doc string) string {
	if doc == "" {
		return ""
	}
	return " (" + doc + ")"
}

// configsOf returns a resource's configs, or the protocol error for it.
func (s *Server) configsOf(typ kmsg.ConfigResourceType, name string) ([]configEntry, int16, string) {
	switch typ {
	case kmsg.ConfigResourceTypeTopic:
		if err := log.ValidateTopic(name); err != nil {
			return nil, kerr.InvalidTopicException.Code, err.Error()
		}
		if _, ok := s.store.Topics()[name]; !ok {
			return nil, kerr.UnknownTopicOrPartition.Code, "unknown topic " + name
		}
		return s.topicConfigs(name), 0, ""
	case kmsg.ConfigResourceTypeBroker:
		if name != "" && name != "0" {
			return nil, kerr.InvalidRequest.Code, "unknown broker " + name + ": this cluster is broker 0 alone"
		}
		return s.brokerConfigs(), 0, ""
	}
	return nil, kerr.InvalidRequest.Code, "resource type " + typ.String() + " has no configs here: ask for a topic (2) or broker 0 (4)"
}
