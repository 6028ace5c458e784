package data

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
	"github.com/pierrec/lz4/v4"
)

func goodParquet(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := parquet.Write(&buf, []pqFlat{{"q", "a", "b", "s"}, {"r", "c", "d", "s"}}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// withFooter replaces the footer of a Parquet file.
func withFooter(b, footer []byte) []byte {
	n := int(binary.LittleEndian.Uint32(b[len(b)-8:]))
	out := append([]byte{}, b[:len(b)-8-n]...)
	out = append(out, footer...)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(footer)))
	return append(out, "PAR1"...)
}

func zigzag(v int64) uint64 { return uint64(v<<1) ^ uint64(v>>63) }

// TestParquetHostileSizes: sizes that parquet-go would allocate before
// checking them are refused, naming the file and the size.
func TestParquetHostileSizes(t *testing.T) {
	good := goodParquet(t)
	n := int(binary.LittleEndian.Uint32(good[len(good)-8:]))
	footer := good[len(good)-8-n : len(good)-8]
	// FileMetaData starts with version (field 1, i32) and the schema list
	// (field 2); claim 2^31 schema elements.
	if footer[0] != 0x15 || footer[2] != 0x19 {
		t.Fatalf("unexpected footer start % x", footer[:4])
	}
	hugeList := append(append([]byte{}, footer[:3]...), 0xFC)
	hugeList = binary.AppendUvarint(hugeList, 1<<31-1)
	hugeList = append(hugeList, footer[4:]...)

	hugeLength := bytes.Clone(good)
	binary.LittleEndian.PutUint32(hugeLength[len(hugeLength)-8:], 0xFFFFFFF0)

	tests := []struct {
		name string
		b    []byte
		want string
	}{
		{"footer length past the start", hugeLength, "footer length 4294967280 exceeds"},
		{"truncated", good[:len(good)-10], "does not end with Parquet's magic number"},
		{"magic only", []byte("PAR1"), "too short"},
		{"not parquet", []byte(`{"prompt": "a", "chosen": "b"}`), "does not start with"},
		{"encrypted footer", append(bytes.Clone(good[:len(good)-4]), "PARE"...), "encrypted"},
		{"schema list of 2^31 elements", withFooter(good, hugeList), "thrift size 2147483647 exceeds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "bad.parquet")
			if err := os.WriteFile(p, tt.b, 0o644); err != nil {
				t.Fatal(err)
			}
			_, _, err := ReadTextPairs(p, ReadOptions{})
			if err == nil || !strings.Contains(err.Error(), "bad.parquet: not a readable Parquet file") || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one naming the file and %q", err, tt.want)
			}
		})
	}
}

// pageHeader encodes a compact-protocol page header with the given sizes
// and, when values >= 0, a data page header holding num_values.
func pageHeader(uncompressed, compressed, values int64) []byte {
	b := []byte{0x15, 0x00} // field 1 type: DATA_PAGE
	b = binary.AppendUvarint(append(b, 0x15), zigzag(uncompressed))
	b = binary.AppendUvarint(append(b, 0x15), zigzag(compressed))
	if values >= 0 {
		b = append(b, 0x2C) // field 5, struct
		b = binary.AppendUvarint(append(b, 0x15), zigzag(values))
		b = append(b, 0x00)
	}
	return append(b, 0x00)
}

func TestCheckPages(t *testing.T) {
	page := func(h []byte, data int) []byte { return append(h, make([]byte, data)...) }
	tests := []struct {
		name  string
		chunk []byte
		want  string // "" for no error
	}{
		{"two pages", append(page(pageHeader(3, 3, 1), 3), page(pageHeader(5, 5, 2), 5)...), ""},
		{"page past the chunk", page(pageHeader(100, 100, 1), 10), "past the end of its column chunk"},
		{"page of 2 GiB", page(pageHeader(1<<31-16, 1<<31-16, 1), 10), "over the"},
		{"uncompressed 2 GiB", page(pageHeader(1<<31-16, 4, 1), 4), "over the"},
		{"negative size", page(pageHeader(4, -4, 1), 4), "negative"},
		{"2^31 values", page(pageHeader(4, 4, 1<<31-1), 4), "2147483647 values"},
		{"header cut short", pageHeader(4, 4, 1)[:5], "runs past its end"},
		{"unknown thrift type", []byte{0x1E, 0x00}, "unknown thrift type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkPages(bytes.NewReader(tt.chunk), 0, int64(len(tt.chunk)), format.Uncompressed)
			switch {
			case tt.want == "" && err != nil:
				t.Fatal(err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestThriftDepth: nesting is bounded, so a hostile footer cannot exhaust
// the stack.
func TestThriftDepth(t *testing.T) {
	b := bytes.Repeat([]byte{0x1C}, 100) // field +1, struct, nested
	err := newThriftReader(bytes.NewReader(b), int64(len(b))).skipStruct(0, nil)
	if err == nil || !strings.Contains(err.Error(), "nested deeper") {
		t.Fatalf("err = %v", err)
	}
}

// TestCheckInflate: for every codec, data that inflates to exactly its
// stated size passes, and the same data against a smaller stated size is
// refused after decompressing no more than that; a corrupt LZ4 block is
// refused (parquet-go's own decoder would double its buffer for ever).
func TestCheckInflate(t *testing.T) {
	plain := bytes.Repeat([]byte("a decompression bomb is mostly one byte "), 4096) // 160 KiB
	zenc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	var gz, br bytes.Buffer
	gw := gzip.NewWriter(&gz)
	gw.Write(plain)
	gw.Close()
	bw := brotli.NewWriter(&br)
	bw.Write(plain)
	bw.Close()
	lz := make([]byte, lz4.CompressBlockBound(len(plain)))
	n, err := lz4.CompressBlock(plain, lz, nil)
	if err != nil || n == 0 {
		t.Fatalf("lz4: %d, %v", n, err)
	}
	packed := map[format.CompressionCodec][]byte{
		format.Zstd:   zenc.EncodeAll(plain, nil),
		format.Gzip:   gz.Bytes(),
		format.Brotli: br.Bytes(),
		format.Snappy: snappy.Encode(nil, plain),
		format.Lz4Raw: lz[:n],
	}
	for codec, src := range packed {
		if len(src) >= len(plain)/10 {
			t.Fatalf("%s: %d bytes compressed, not a bomb", codec, len(src))
		}
		if err := checkInflate(codec, src, int64(len(plain))); err != nil {
			t.Errorf("%s at its true size: %v", codec, err)
		}
		err := checkInflate(codec, src, 1000)
		if err == nil || !strings.Contains(err.Error(), "1000 bytes") {
			t.Errorf("%s stated as 1000 bytes: %v", codec, err)
		}
	}
	if err := checkInflate(format.Lz4Raw, []byte{0xf0, 0xff, 0xff, 0x01, 0x02}, 1<<20); err == nil {
		t.Error("a corrupt LZ4 block passed")
	}
	if err := checkInflate(format.Zstd, []byte("not zstd at all"), 1<<20); err == nil {
		t.Error("data that is not zstd passed")
	}
}
