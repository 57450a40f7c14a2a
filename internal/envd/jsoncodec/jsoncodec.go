// Package jsoncodec is the Connect JSON codec of envd and its clients. It writes and
// reads process output events — nearly all bytes envd ever sends — without reflection,
// and hands every other message to protojson, so the wire format stays canonical proto3
// JSON. The SDKs speak JSON, which makes this the hot path of command output.
package jsoncodec

import (
	"bytes"
	"encoding/base64"
	"fmt"

	"connectrpc.com/connect"
	pb "github.com/wrennhq/wrenn/gen/envd/process"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Codec implements connect.Codec for "json".
type Codec struct{ name string }

// HandlerOptions registers the codec for both names Connect uses for JSON.
func HandlerOptions() []connect.HandlerOption {
	return []connect.HandlerOption{connect.WithCodec(Codec{"json"}), connect.WithCodec(Codec{"json; charset=utf-8"})}
}

// ClientOptions selects the codec for a client, which then speaks JSON.
func ClientOptions() []connect.ClientOption {
	return []connect.ClientOption{connect.WithCodec(Codec{"json"})}
}

func (c Codec) Name() string { return c.name }

// The fast path's exact shapes: `{"event":{"data":{"<kind>":"<base64>"}}}`.
const (
	prefix = `{"event":{"data":{"`
	suffix = `"}}}`
)

func (c Codec) Marshal(msg any) ([]byte, error) { return c.MarshalAppend(nil, msg) }

// MarshalAppend lets Connect reuse its buffers.
func (c Codec) MarshalAppend(dst []byte, msg any) ([]byte, error) {
	if ev := eventOf(msg); ev != nil {
		if data := ev.GetData(); data != nil {
			kind, payload, ok := output(data)
			if ok {
				dst = append(dst, prefix...)
				dst = append(dst, kind...)
				dst = append(dst, `":"`...)
				dst = base64.StdEncoding.AppendEncode(dst, payload)
				return append(dst, suffix...), nil
			}
		}
	}
	m, ok := msg.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("jsoncodec: %T is not a proto message", msg)
	}
	return protojson.MarshalOptions{}.MarshalAppend(dst, m)
}

func (c Codec) Unmarshal(data []byte, msg any) error {
	if ok := unmarshalFast(data, msg); ok {
		return nil
	}
	m, ok := msg.(proto.Message)
	if !ok {
		return fmt.Errorf("jsoncodec: %T is not a proto message", msg)
	}
	if len(data) == 0 {
		proto.Reset(m)
		return nil
	}
	return protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(data, m)
}

// unmarshalFast decodes exactly the shape MarshalAppend writes; anything else (other
// spacing, escapes, URL-safe base64) goes through protojson, which accepts it all.
func unmarshalFast(data []byte, msg any) bool {
	rest, ok := bytes.CutPrefix(data, []byte(prefix))
	if !ok {
		return false
	}
	rest, ok = bytes.CutSuffix(rest, []byte(suffix))
	if !ok {
		return false
	}
	// A quote or backslash in b64 (another shape) makes the base64 decode fail.
	kind, b64, ok := bytes.Cut(rest, []byte(`":"`))
	if !ok {
		return false
	}
	payload, err := base64.StdEncoding.AppendDecode(make([]byte, 0, base64.StdEncoding.DecodedLen(len(b64))), b64)
	if err != nil {
		return false
	}
	d := &pb.ProcessEvent_DataEvent{}
	switch string(kind) {
	case "stdout":
		d.Output = &pb.ProcessEvent_DataEvent_Stdout{Stdout: payload}
	case "stderr":
		d.Output = &pb.ProcessEvent_DataEvent_Stderr{Stderr: payload}
	case "pty":
		d.Output = &pb.ProcessEvent_DataEvent_Pty{Pty: payload}
	default:
		return false
	}
	ev := &pb.ProcessEvent{Event: &pb.ProcessEvent_Data{Data: d}}
	switch m := msg.(type) {
	case *pb.StartResponse:
		proto.Reset(m)
		m.Event = ev
	case *pb.ConnectResponse:
		proto.Reset(m)
		m.Event = ev
	default:
		return false
	}
	return true
}

func eventOf(msg any) *pb.ProcessEvent {
	switch m := msg.(type) {
	case *pb.StartResponse:
		return m.GetEvent()
	case *pb.ConnectResponse:
		return m.GetEvent()
	}
	return nil
}

func output(d *pb.ProcessEvent_DataEvent) (kind string, payload []byte, ok bool) {
	switch o := d.GetOutput().(type) {
	case *pb.ProcessEvent_DataEvent_Stdout:
		return "stdout", o.Stdout, true
	case *pb.ProcessEvent_DataEvent_Stderr:
		return "stderr", o.Stderr, true
	case *pb.ProcessEvent_DataEvent_Pty:
		return "pty", o.Pty, true
	}
	return "", nil, false
}
