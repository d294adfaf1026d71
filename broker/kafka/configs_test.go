package kafka

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestConfigsAndPartitions describes topic and broker configs (Kafka's
// defaults, which the test broker runs with), alters them (same value:
// accepted; new value: INVALID_CONFIG) and grows a topic with
// CreatePartitions, then produces to a new partition.
func TestConfigsAndPartitions(t *testing.T) {
	b := startBroker(t, t.TempDir(), nil)
	cl := newClient(t, b.addr)
	createTopic(t, cl, "cfg", 2)
	ctx := context.Background()

	dc := kmsg.NewPtrDescribeConfigsRequest()
	dc.IncludeDocumentation = true
	dc.Resources = []kmsg.DescribeConfigsRequestResource{
		{ResourceType: kmsg.ConfigResourceTypeTopic, ResourceName: "cfg"},
		{ResourceType: kmsg.ConfigResourceTypeBroker, ResourceName: "0"},
		{ResourceType: kmsg.ConfigResourceTypeTopic, ResourceName: "nope"},
	}
	dr, err := dc.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range dr.Resources { // kgo splits the request by type: match by name
		if r.ResourceName == "nope" {
			wantCode(t, "describe an unknown topic", r.ErrorCode, kerr.UnknownTopicOrPartition)
			continue
		}
		wantCode(t, "describe "+r.ResourceName, r.ErrorCode, nil)
		for _, c := range r.Configs {
			got[c.Name] = *c.Value
		}
	}
	for name, want := range map[string]string{ // Kafka's defaults
		"segment.bytes": "1073741824", "retention.ms": "604800000", "retention.bytes": "-1",
		"cleanup.policy": "delete", "log.segment.bytes": "1073741824", "broker.id": "0",
	} {
		if got[name] != want {
			t.Errorf("config %s = %q, want %q", name, got[name], want)
		}
	}
	if len(dr.Resources) != 3 {
		t.Fatalf("described %d resources, want 3", len(dr.Resources))
	}

	alter := func(val string) int16 {
		ia := kmsg.NewPtrIncrementalAlterConfigsRequest()
		ia.Resources = []kmsg.IncrementalAlterConfigsRequestResource{{ResourceType: kmsg.ConfigResourceTypeTopic, ResourceName: "cfg",
			Configs: []kmsg.IncrementalAlterConfigsRequestResourceConfig{{Name: "retention.ms", Value: kmsg.StringPtr(val)}}}}
		r, err := ia.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		return r.Resources[0].ErrorCode
	}
	wantCode(t, "set retention.ms to its value", alter("604800000"), nil)
	wantCode(t, "change retention.ms", alter("1000"), kerr.InvalidConfig)

	grow := func(count int32) int16 {
		cp := kmsg.NewPtrCreatePartitionsRequest()
		cp.Topics = []kmsg.CreatePartitionsRequestTopic{{Topic: "cfg", Count: count}}
		r, err := cp.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		return r.Topics[0].ErrorCode
	}
	wantCode(t, "shrink to 1 partition", grow(1), kerr.InvalidPartitions)
	wantCode(t, "grow to 4 partitions", grow(4), nil)
	p := newClient(t, b.addr, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	r, err := p.ProduceSync(ctx, &kgo.Record{Topic: "cfg", Partition: 3, Value: []byte("new")}).First()
	if err != nil || r.Partition != 3 || r.Offset != 0 {
		t.Fatalf("produce to the new partition 3: %v (partition %d offset %d)", err, r.Partition, r.Offset)
	}
}
