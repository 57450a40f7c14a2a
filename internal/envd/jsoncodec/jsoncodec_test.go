package jsoncodec

import (
	"bytes"
	"testing"

	pb "github.com/wrennhq/wrenn/gen/envd/process"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

func TestFastPathIsCanonicalJSON(t *testing.T) {
	c := Codec{"json"}
	payloads := [][]byte{nil, {}, []byte("hi\n"), bytes.Repeat([]byte{0, 0xff, '"', '\\'}, 1000)}
	for _, p := range payloads {
		for _, msg := range []proto.Message{
			&pb.StartResponse{Event: &pb.ProcessEvent{Event: &pb.ProcessEvent_Data{Data: &pb.ProcessEvent_DataEvent{Output: &pb.ProcessEvent_DataEvent_Stdout{Stdout: p}}}}},
			&pb.ConnectResponse{Event: &pb.ProcessEvent{Event: &pb.ProcessEvent_Data{Data: &pb.ProcessEvent_DataEvent{Output: &pb.ProcessEvent_DataEvent_Stderr{Stderr: p}}}}},
			&pb.StartResponse{Event: &pb.ProcessEvent{Event: &pb.ProcessEvent_Data{Data: &pb.ProcessEvent_DataEvent{Output: &pb.ProcessEvent_DataEvent_Pty{Pty: p}}}}},
		} {
			out, err := c.Marshal(msg)
			if err != nil {
				t.Fatal(err)
			}
			// A standard decoder (what every SDK has) reads the fast output...
			viaStd := msg.ProtoReflect().New().Interface()
			if err := protojson.Unmarshal(out, viaStd); err != nil {
				t.Fatalf("protojson cannot read %s: %v", out, err)
			}
			// ...and the fast decoder reads both its own output and protojson's.
			viaFast := msg.ProtoReflect().New().Interface()
			if err := c.Unmarshal(out, viaFast); err != nil {
				t.Fatal(err)
			}
			std, _ := protojson.Marshal(msg)
			viaFastStd := msg.ProtoReflect().New().Interface()
			if err := c.Unmarshal(std, viaFastStd); err != nil {
				t.Fatal(err)
			}
			if !sameOutput(msg, viaStd) || !sameOutput(msg, viaFast) || !sameOutput(msg, viaFastStd) {
				t.Errorf("round trip of %v changed it: std %v fast %v", msg, viaStd, viaFast)
			}
		}
	}
}

// sameOutput compares data payloads, treating nil and empty alike (as the wire does).
func sameOutput(a, b proto.Message) bool {
	get := func(m proto.Message) (string, []byte) {
		var ev *pb.ProcessEvent
		switch v := m.(type) {
		case *pb.StartResponse:
			ev = v.GetEvent()
		case *pb.ConnectResponse:
			ev = v.GetEvent()
		}
		d := ev.GetData()
		switch o := d.GetOutput().(type) {
		case *pb.ProcessEvent_DataEvent_Stdout:
			return "stdout", o.Stdout
		case *pb.ProcessEvent_DataEvent_Stderr:
			return "stderr", o.Stderr
		case *pb.ProcessEvent_DataEvent_Pty:
			return "pty", o.Pty
		}
		return "", nil
	}
	ka, pa := get(a)
	kb, pb := get(b)
	return ka == kb && bytes.Equal(pa, pb)
}

func TestOtherMessagesUseProtoJSON(t *testing.T) {
	c := Codec{"json"}
	msg := &pb.StartRequest{Process: &pb.ProcessConfig{Cmd: "/bin/bash", Args: []string{"-l"}}, Stdin: proto.Bool(false)}
	out, err := c.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out, []byte(`"stdin":false`)) && !bytes.Contains(out, []byte(`"stdin": false`)) {
		t.Errorf("optional false field not emitted: %s", out)
	}
	var back pb.StartRequest
	if err := c.Unmarshal([]byte(`{"process":{"cmd":"x"},"unknown_field":1,"stdin":false}`), &back); err != nil || back.GetProcess().GetCmd() != "x" || back.Stdin == nil {
		t.Errorf("unmarshal with unknown field: %v %v", &back, err)
	}
	end := &pb.StartResponse{Event: &pb.ProcessEvent{Event: &pb.ProcessEvent_End{End: &pb.ProcessEvent_EndEvent{ExitCode: 1, Status: "exit status 1"}}}}
	out, _ = c.Marshal(end)
	var got pb.StartResponse
	if err := c.Unmarshal(out, &got); err != nil || !proto.Equal(end, &got) {
		t.Errorf("end event round trip: %s → %v (%v)", out, &got, err)
	}
	if err := c.Unmarshal([]byte(`{"event":{"data":{"stdout":"!!!"}}}`), &got); err == nil {
		t.Error("invalid base64 accepted")
	}
}
