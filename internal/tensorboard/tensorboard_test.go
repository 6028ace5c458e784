package tensorboard

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The reader below is written from the formats' descriptions, not from
// the writer: TFRecord (tensorflow/core/lib/io/record_writer.cc's comment:
// uint64 length, uint32 masked crc of length, data, uint32 masked crc of
// data; mask = ((crc >> 15) | (crc << 17)) + 0xa282ead8, crc32c) and the
// protobuf wire format (varint keys field<<3|type; types 0 varint, 1
// 64-bit, 2 length-delimited, 5 32-bit).

// crc32c is the Castagnoli CRC computed bit by bit (reflected polynomial
// 0x82F63B78).
func crc32c(b []byte) uint32 {
	c := ^uint32(0)
	for _, x := range b {
		c ^= uint32(x)
		for range 8 {
			if c&1 != 0 {
				c = c>>1 ^ 0x82F63B78
			} else {
				c >>= 1
			}
		}
	}
	return ^c
}

func mask(c uint32) uint32 { return ((c >> 15) | (c << 17)) + 0xa282ead8 }

type scalar struct {
	tag   string
	value float32
}

type event struct {
	wall    float64
	step    int64
	version string
	values  []scalar
}

func readRecords(b []byte) ([][]byte, error) {
	var out [][]byte
	for len(b) > 0 {
		if len(b) < 12 {
			return nil, errors.New("truncated header")
		}
		n := binary.LittleEndian.Uint64(b[:8])
		if got := binary.LittleEndian.Uint32(b[8:12]); got != mask(crc32c(b[:8])) {
			return nil, fmt.Errorf("length crc %#x, want %#x", got, mask(crc32c(b[:8])))
		}
		if uint64(len(b)) < 12+n+4 {
			return nil, errors.New("truncated record")
		}
		data := b[12 : 12+n]
		if got := binary.LittleEndian.Uint32(b[12+n:]); got != mask(crc32c(data)) {
			return nil, fmt.Errorf("data crc %#x, want %#x", got, mask(crc32c(data)))
		}
		out = append(out, data)
		b = b[12+n+4:]
	}
	return out, nil
}

func varint(b []byte) (uint64, int) {
	var v uint64
	for i, x := range b {
		v |= uint64(x&0x7f) << (7 * i)
		if x < 0x80 {
			return v, i + 1
		}
	}
	panic("bad varint")
}

// fields splits a message into (field, wire type, raw value) triples.
func fields(b []byte, f func(num int, typ int, v []byte, u uint64)) {
	for len(b) > 0 {
		key, n := varint(b)
		b = b[n:]
		num, typ := int(key>>3), int(key&7)
		switch typ {
		case 0:
			v, n := varint(b)
			f(num, typ, nil, v)
			b = b[n:]
		case 1:
			f(num, typ, b[:8], binary.LittleEndian.Uint64(b[:8]))
			b = b[8:]
		case 2:
			l, n := varint(b)
			f(num, typ, b[n:n+int(l)], 0)
			b = b[n+int(l):]
		case 5:
			f(num, typ, b[:4], uint64(binary.LittleEndian.Uint32(b[:4])))
			b = b[4:]
		default:
			panic(fmt.Sprintf("wire type %d", typ))
		}
	}
}

func parseEvent(b []byte) event {
	var e event
	fields(b, func(num, typ int, v []byte, u uint64) {
		switch num {
		case 1:
			e.wall = math.Float64frombits(u)
		case 2:
			e.step = int64(u)
		case 3:
			e.version = string(v)
		case 5:
			fields(v, func(num, typ int, v []byte, u uint64) {
				if num != 1 {
					return
				}
				var s scalar
				fields(v, func(num, typ int, v []byte, u uint64) {
					switch num {
					case 1:
						s.tag = string(v)
					case 2:
						s.value = math.Float32frombits(uint32(u))
					}
				})
				e.values = append(e.values, s)
			})
		}
	})
	return e
}

func TestCRC(t *testing.T) {
	// The CRC-32C check value of "123456789" (RFC 3720, appendix B.4).
	if got := crc32c([]byte("123456789")); got != 0xE3069283 {
		t.Fatalf("the test's crc32c gives %#x", got)
	}
	for _, s := range []string{"", "a", "123456789", strings.Repeat("tensorboard", 100)} {
		if got, want := MaskedCRC([]byte(s)), mask(crc32c([]byte(s))); got != want {
			t.Errorf("%q: masked crc %#x, want %#x", s, got, want)
		}
	}
}

// TestWriteRead writes a file version event and scalars, and reads them
// back with the independent reader: every record's checksums, the
// version first, then each step's tags and values (float32) in order.
func TestWriteRead(t *testing.T) {
	dir := t.TempDir()
	start := time.Unix(1700000000, 250_000_000)
	w, err := Create(dir, start)
	if err != nil {
		t.Fatal(err)
	}
	steps := []map[string]float64{
		{"train/loss": 0.693, "train/lr": 1e-3, "train/grad_norm": math.NaN()},
		{"train/loss": 0.25, "eval/eval_accuracy": 0.875},
		{},
		{"decomposition/share_of_wall_time": 1, "train/loss": -3.5e-8},
	}
	for i, v := range steps {
		if err := w.Scalars(int64(10*i+1), start.Add(time.Duration(i)*time.Second), v); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(filepath.Base(w.Path()), "events.out.tfevents.1700000000.") {
		t.Errorf("file name %s", filepath.Base(w.Path()))
	}
	b, err := os.ReadFile(w.Path())
	if err != nil {
		t.Fatal(err)
	}
	recs, err := readRecords(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 4 { // the version, and three steps with finite values
		t.Fatalf("%d records, want 4", len(recs))
	}
	first := parseEvent(recs[0])
	if first.version != "brain.Event:2" || first.wall != 1700000000.25 {
		t.Errorf("first event %+v", first)
	}
	want := []event{
		{step: 1, values: []scalar{{"train/loss", 0.693}, {"train/lr", 1e-3}}},
		{step: 11, values: []scalar{{"eval/eval_accuracy", 0.875}, {"train/loss", 0.25}}},
		{step: 31, values: []scalar{{"decomposition/share_of_wall_time", 1}, {"train/loss", -3.5e-8}}},
	}
	for i, w := range want {
		got := parseEvent(recs[i+1])
		if got.step != w.step || fmt.Sprint(got.values) != fmt.Sprint(w.values) {
			t.Errorf("event %d: step %d %v, want step %d %v", i+1, got.step, got.values, w.step, w.values)
		}
	}
	// A flipped byte fails the checksum.
	b[len(b)-6] ^= 1
	if _, err := readRecords(b); err == nil {
		t.Error("a corrupted record passed the reader's checks: the test reads nothing")
	}
}
