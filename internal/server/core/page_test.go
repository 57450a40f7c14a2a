package core

import (
	"encoding/base64"
	"errors"
	"testing"
	"time"
)

func TestCursorRoundTrip(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 123456000, time.FixedZone("x", 3600))
	c := Cursor{At: at, ID: "0b9e4a52-8f37-4c55-9f0e-6a1c2d3e4f50"}
	s := c.Encode("teams")
	got, err := DecodeCursor("teams", s)
	if err != nil || got == nil || !got.At.Equal(at) || got.ID != c.ID {
		t.Fatalf("decode %q: %+v %v, want %+v", s, got, err, c)
	}
	if none, err := DecodeCursor("teams", ""); none != nil || err != nil {
		t.Errorf("no cursor: %+v %v", none, err)
	}
	raw := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for _, bad := range []string{
		"not base64!", s + "=", raw("teams|2025-01-02T03:04:05Z"), raw("teams|yesterday|x"), raw("teams|2025-01-02T03:04:05Z|"),
		raw("teams|2025-01-02T03:04:05Z|a|b"), raw("users|2025-01-02T03:04:05Z|x"), c.Encode("users"), string(make([]byte, 300)),
	} {
		if got, err := DecodeCursor("teams", bad); !errors.Is(err, ErrInvalid) || got != nil {
			t.Errorf("cursor %q: %+v %v, want ErrInvalid", bad, got, err)
		}
	}
}

func TestPageLimit(t *testing.T) {
	for in, want := range map[int]int{0: DefaultPageLimit, 1: 1, MaxPageLimit: MaxPageLimit} {
		if got, err := PageLimit(in); got != want || err != nil {
			t.Errorf("PageLimit(%d) = %d %v, want %d", in, got, err, want)
		}
	}
	for _, in := range []int{-1, MaxPageLimit + 1} {
		if _, err := PageLimit(in); !errors.Is(err, ErrInvalid) {
			t.Errorf("PageLimit(%d): %v, want ErrInvalid", in, err)
		}
	}
}
