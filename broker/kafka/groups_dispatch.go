package kafka

import (
	"net"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// groupRequest answers the group coordinator's and the config and
// partition admin APIs; ok is false for any other request.
func (c *conn) groupRequest(h header, req kmsg.Request) (resp kmsg.Response, ok bool) {
	co := c.srv.groups
	switch r := req.(type) {
	case *kmsg.FindCoordinatorRequest:
		return c.srv.findCoordinator(r, c.local), true
	case *kmsg.JoinGroupRequest:
		host, _, _ := net.SplitHostPort(c.peer)
		return co.joinGroup(r, h.clientID, "/"+host), true
	case *kmsg.SyncGroupRequest:
		return co.syncGroup(r), true
	case *kmsg.HeartbeatRequest:
		return co.heartbeat(r), true
	case *kmsg.LeaveGroupRequest:
		return co.leaveGroup(r), true
	case *kmsg.OffsetCommitRequest:
		return co.offsetCommit(r), true
	case *kmsg.OffsetFetchRequest:
		return co.offsetFetch(r), true
	case *kmsg.ListGroupsRequest:
		return co.listGroups(r), true
	case *kmsg.DescribeGroupsRequest:
		return co.describeGroups(r), true
	case *kmsg.DeleteGroupsRequest:
		return co.deleteGroups(r), true
	case *kmsg.OffsetDeleteRequest:
		return co.offsetDelete(r), true
	case *kmsg.DescribeConfigsRequest:
		return c.srv.describeConfigs(r), true
	case *kmsg.AlterConfigsRequest:
		return c.srv.alterConfigs(r), true
	case *kmsg.IncrementalAlterConfigsRequest:
		return c.srv.incrementalAlterConfigs(r), true
	case *kmsg.CreatePartitionsRequest:
		return c.srv.createPartitions(r), true
	}
	return nil, false
}
