package kafka

import (
	"net"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// FindCoordinator (key 10), v0-v4: this broker, node 0, coordinates every
// group, at the address the client connected to (as Metadata says). v4+
// asks for a batch of keys. Transaction coordinators are refused as
// InitProducerId refuses transactional ids: there are no transactions.

func (s *Server) findCoordinator(req *kmsg.FindCoordinatorRequest, local string) *kmsg.FindCoordinatorResponse {
	resp := kmsg.NewPtrFindCoordinatorResponse()
	host, portStr, _ := net.SplitHostPort(local)
	port, _ := strconv.Atoi(portStr)
	keys := req.CoordinatorKeys
	if req.Version < 4 {
		keys = []string{req.CoordinatorKey}
	}
	for _, key := range keys {
		rc := kmsg.NewFindCoordinatorResponseCoordinator()
		rc.Key, rc.NodeID, rc.Host, rc.Port = key, -1, "", -1
		switch {
		case req.CoordinatorType == 1:
			rc.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
			rc.ErrorMessage = strp("transactions are not supported by the copyscope broker")
		case req.CoordinatorType != 0:
			rc.ErrorCode = kerr.InvalidRequest.Code
			rc.ErrorMessage = strp("unknown coordinator type " + strconv.Itoa(int(req.CoordinatorType)) + ": use 0 (group)")
		case key == "":
			rc.ErrorCode = kerr.InvalidGroupID.Code
			rc.ErrorMessage = strp("empty group id")
		default:
			rc.NodeID, rc.Host, rc.Port = 0, host, int32(port)
		}
		resp.Coordinators = append(resp.Coordinators, rc)
	}
	if req.Version < 4 {
		rc := resp.Coordinators[0]
		resp.Coordinators = nil
		resp.ErrorCode, resp.ErrorMessage = rc.ErrorCode, rc.ErrorMessage
		resp.NodeID, resp.Host, resp.Port = rc.NodeID, rc.Host, rc.Port
	}
	return resp
}
