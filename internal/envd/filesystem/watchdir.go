package filesystem

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"

	rpc "github.com/wrennhq/wrenn/gen/envd/filesystem"
	"github.com/wrennhq/wrenn/internal/envd/streamx"
)

// WatchDir streams the changes under a directory: start{} once inotify is armed, then
// filesystem events, with keepalives whenever the stream was idle for the requested
// interval, until the client cancels, the deadline passes or the watch fails.
func (s *Service) WatchDir(ctx context.Context, req *connect.Request[rpc.WatchDirRequest], stream *connect.ServerStream[rpc.WatchDirResponse]) error {
	root, err := s.watchTarget(req.Header(), req.Msg.GetPath(), req.Msg.GetAllowNetworkMounts())
	if err != nil {
		return err
	}
	if s.ctx.Err() != nil {
		return errShuttingDown()
	}
	d, err := openDirWatch(root, req.Msg.GetRecursive(), req.Msg.GetIncludeEntry(), s.names)
	if err != nil {
		return s.internal("watchdir", err)
	}
	defer d.close()
	log := s.log.With("path", root, "recursive", req.Msg.GetRecursive())
	log.Debug("watch stream started")
	defer log.Debug("watch stream ended")

	if err := stream.Send(&rpc.WatchDirResponse{Event: &rpc.WatchDirResponse_Start{Start: &rpc.WatchDirResponse_StartEvent{}}}); err != nil {
		return fmt.Errorf("send start event: %w", err)
	}

	idle := streamx.NewKeepalive(req.Header())
	defer idle.Stop()

	for {
		select {
		case <-ctx.Done():
			return streamx.ContextError(ctx)
		case <-s.ctx.Done():
			return errShuttingDown()
		case err := <-d.errs:
			return s.internal("watchdir", fmt.Errorf("watcher error: %w", err))
		case <-idle.C():
			ka := &rpc.WatchDirResponse{Event: &rpc.WatchDirResponse_Keepalive{Keepalive: &rpc.WatchDirResponse_KeepAlive{}}}
			if err := stream.Send(ka); err != nil {
				return fmt.Errorf("send keepalive: %w", err)
			}
			idle.Reset()
		case ev, ok := <-d.events():
			if !ok {
				return s.internal("watchdir", errors.New("watcher event channel closed"))
			}
			evs, herr := d.handle(ev)
			for _, fe := range evs {
				msg := &rpc.WatchDirResponse{Event: &rpc.WatchDirResponse_Filesystem{Filesystem: fe}}
				if err := stream.Send(msg); err != nil {
					return fmt.Errorf("send filesystem event: %w", err)
				}
			}
			if len(evs) > 0 {
				idle.Reset()
			}
			if herr != nil {
				return s.internal("watchdir", fmt.Errorf("watcher error: %w", herr))
			}
		}
	}
}
