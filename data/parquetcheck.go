package data

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go/format"
	"github.com/pierrec/lz4/v4"
)

// parquet-go trusts the sizes a file states: it allocates a footer of the
// length the last 8 bytes claim, a list of as many elements as a thrift
// list header claims and a page buffer of the size a page header claims,
// each before checking it against the file. A corrupt or hostile file of a
// few hundred bytes can make it allocate gigabytes. The checks here walk
// those structures first, without allocating what they claim, and refuse
// sizes that do not fit.

const (
	// maxFooterBytes bounds the file metadata; real footers are kilobytes
	// to a few megabytes.
	maxFooterBytes = 64 << 20
	// maxPageBytes bounds a page, compressed or not: a page holds a few
	// rows, and rows over MaxLineBytes are refused in JSON Lines too.
	maxPageBytes = 2 * MaxLineBytes
	// maxPageValues bounds the values of one page; writers cut pages at
	// thousands to a million values.
	maxPageValues = 1 << 24
	// maxThriftDepth bounds the nesting of thrift structures (Parquet's go
	// a few levels deep).
	maxThriftDepth = 32
)

// checkParquetFrame checks the magic numbers and the footer of a Parquet
// file of the given size, and returns the footer's length.
func checkParquetFrame(r io.ReaderAt, size int64) (int64, error) {
	if size < 12 {
		return 0, fmt.Errorf("%d bytes, too short for a Parquet file (magic number, footer, footer length, magic number)", size)
	}
	var head [4]byte
	if _, err := r.ReadAt(head[:], 0); err != nil {
		return 0, err
	}
	var tail [8]byte
	if _, err := r.ReadAt(tail[:], size-8); err != nil && !errors.Is(err, io.EOF) {
		return 0, err
	}
	switch {
	case string(head[:]) != "PAR1":
		return 0, fmt.Errorf("does not start with Parquet's magic number PAR1 (starts with %q)", head[:])
	case string(tail[4:]) == "PARE":
		return 0, errors.New("the footer is encrypted, which prism does not read")
	case string(tail[4:]) != "PAR1":
		return 0, fmt.Errorf("does not end with Parquet's magic number PAR1 (ends with %q): the file is truncated or not Parquet", tail[4:])
	}
	n := int64(binary.LittleEndian.Uint32(tail[:4]))
	if n > size-12 {
		return 0, fmt.Errorf("the footer length %d exceeds the %d bytes before it: the file is truncated or corrupt", n, size-12)
	}
	if n > maxFooterBytes {
		return 0, fmt.Errorf("the footer length %d exceeds the %d-byte limit", n, maxFooterBytes)
	}
	footer := io.NewSectionReader(r, size-8-n, n)
	if err := newThriftReader(footer, n).skipStruct(0, nil); err != nil {
		return 0, fmt.Errorf("footer: %w", err)
	}
	return n, nil
}

// checkParquetPages checks every column chunk of meta against the file
// (dataEnd is where the footer starts) and walks its page headers.
func checkParquetPages(r io.ReaderAt, meta *format.FileMetaData, dataEnd int64) error {
	for g, rg := range meta.RowGroups {
		for c, cc := range rg.Columns {
			md := cc.MetaData
			start := md.DataPageOffset
			if md.DictionaryPageOffset > 0 && md.DictionaryPageOffset < start {
				start = md.DictionaryPageOffset
			}
			if start < 4 || md.TotalCompressedSize < 0 || md.TotalCompressedSize > dataEnd-start {
				return fmt.Errorf("row group %d, column %d: its pages [%d, +%d) lie outside the data (4 to %d)", g, c, start, md.TotalCompressedSize, dataEnd)
			}
			if err := checkPages(r, start, start+md.TotalCompressedSize, md.Codec); err != nil {
				return fmt.Errorf("row group %d, column %d: %w", g, c, err)
			}
		}
	}
	return nil
}

// checkPages walks the pages in [start, end): each a thrift page header
// followed by as many bytes as it states, which must decompress (codec)
// to no more than the header's uncompressed size.
func checkPages(r io.ReaderAt, start, end int64, codec format.CompressionCodec) error {
	for pos := start; pos < end; {
		var compressed, uncompressed, values int64 = -1, -1, 0
		var pageType, defLen, repLen int64
		v2Compressed := int64(1)
		t := newThriftReader(io.NewSectionReader(r, pos, end-pos), end-pos)
		err := t.skipStruct(0, func(path []int16, v int64) {
			switch {
			case len(path) == 1 && path[0] == 1:
				pageType = v
			case len(path) == 1 && path[0] == 2:
				uncompressed = v
			case len(path) == 1 && path[0] == 3:
				compressed = v
			case len(path) == 2 && path[1] == 1 && (path[0] == 5 || path[0] == 7 || path[0] == 8):
				values = v // num_values of the data, dictionary or v2 data page
			case len(path) == 2 && path[0] == 8 && path[1] == 5:
				defLen = v
			case len(path) == 2 && path[0] == 8 && path[1] == 6:
				repLen = v
			case len(path) == 2 && path[0] == 8 && path[1] == 7:
				v2Compressed = v
			}
		})
		if err != nil {
			return fmt.Errorf("page header at byte %d: %w", pos, err)
		}
		switch {
		case compressed < 0 || uncompressed < 0:
			return fmt.Errorf("page header at byte %d: missing or negative page sizes", pos)
		case compressed > maxPageBytes || uncompressed > maxPageBytes:
			return fmt.Errorf("page at byte %d: %d bytes (%d uncompressed), over the %d-byte limit", pos, compressed, uncompressed, maxPageBytes)
		case compressed > end-pos-t.n:
			return fmt.Errorf("page at byte %d: %d bytes, past the end of its column chunk (%d bytes left)", pos, compressed, end-pos-t.n)
		case values < 0 || values > maxPageValues:
			return fmt.Errorf("page at byte %d: %d values, outside 0 to %d", pos, values, maxPageValues)
		}
		// A data page v2 keeps its levels uncompressed, before the values.
		skip, want := int64(0), uncompressed
		if pageType == pageDataV2 {
			if defLen < 0 || repLen < 0 || defLen+repLen > min(compressed, uncompressed) {
				return fmt.Errorf("page at byte %d: level lengths %d and %d do not fit the page", pos, repLen, defLen)
			}
			skip, want = defLen+repLen, uncompressed-defLen-repLen
		}
		if codec != format.Uncompressed && (pageType != pageDataV2 || v2Compressed != 0) {
			body := make([]byte, compressed-skip)
			if _, err := r.ReadAt(body, pos+t.n+skip); err != nil {
				return fmt.Errorf("page at byte %d: %w", pos, err)
			}
			if err := checkInflate(codec, body, want); err != nil {
				return fmt.Errorf("page at byte %d: %w", pos, err)
			}
		}
		pos += t.n + compressed
	}
	return nil
}

// pageDataV2 is PageType DATA_PAGE_V2.
const pageDataV2 = 3

// checkInflate decompresses src with codec, keeping at most want bytes,
// and refuses it if it holds more or does not decompress. parquet-go's
// decoders trust the data: a page of a few hundred kilobytes whose zstd
// frames inflate to gigabytes would be inflated whole, and its LZ4 decoder
// doubles its buffer without end on a corrupt block.
func checkInflate(codec format.CompressionCodec, src []byte, want int64) error {
	var n int64
	var err error
	switch codec {
	case format.Snappy:
		var l int
		if l, err = snappy.DecodedLen(src); err == nil {
			if n = int64(l); n <= want {
				_, err = snappy.Decode(make([]byte, l), src)
			}
		}
	case format.Gzip:
		var zr *gzip.Reader
		if zr, err = gzip.NewReader(bytes.NewReader(src)); err == nil {
			n, err = io.Copy(io.Discard, io.LimitReader(zr, want+1))
		}
	case format.Brotli:
		n, err = io.Copy(io.Discard, io.LimitReader(brotli.NewReader(bytes.NewReader(src)), want+1))
	case format.Zstd:
		// DecodeAll, as parquet-go decodes, with its allocations bounded:
		// a frame claiming more than want is refused before it is made.
		var d *zstd.Decoder
		if d, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(max(want, 1)))); err == nil {
			var out []byte
			out, err = d.DecodeAll(src, nil)
			d.Close()
			n = int64(len(out))
			if errors.Is(err, zstd.ErrDecoderSizeExceeded) {
				n, err = want+1, nil
			}
		}
	case format.Lz4Raw:
		var l int
		l, err = lz4.UncompressBlock(src, make([]byte, want))
		n = int64(l)
	default:
		return nil // a codec parquet-go lacks is its to refuse
	}
	if err != nil {
		return fmt.Errorf("%s data that does not decompress within its stated %d bytes: %v", codec, want, err)
	}
	if n > want {
		return fmt.Errorf("%s data inflates past its stated %d bytes", codec, want)
	}
	return nil
}

// thriftReader reads the thrift compact protocol for checking only: it
// skips values and checks every size it meets against the bytes left.
type thriftReader struct {
	r    *bufio.Reader
	left int64 // bytes that may still be read
	n    int64 // bytes read
}

func newThriftReader(r io.Reader, limit int64) *thriftReader {
	return &thriftReader{r: bufio.NewReaderSize(r, 4096), left: limit}
}

var errThriftEnd = errors.New("thrift data runs past its end")

func (t *thriftReader) byte() (byte, error) {
	if t.left <= 0 {
		return 0, errThriftEnd
	}
	b, err := t.r.ReadByte()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return 0, errThriftEnd
		}
		return 0, err
	}
	t.left--
	t.n++
	return b, nil
}

func (t *thriftReader) uvarint() (uint64, error) {
	var v uint64
	for shift := 0; shift < 64; shift += 7 {
		b, err := t.byte()
		if err != nil {
			return 0, err
		}
		v |= uint64(b&0x7f) << shift
		if b < 0x80 {
			return v, nil
		}
	}
	return 0, errors.New("thrift varint longer than 10 bytes")
}

func (t *thriftReader) zigzag() (int64, error) {
	u, err := t.uvarint()
	return int64(u>>1) ^ -int64(u&1), err
}

func (t *thriftReader) skip(n int64) error {
	if n < 0 || n > t.left {
		return errThriftEnd
	}
	if _, err := t.r.Discard(int(n)); err != nil {
		return errThriftEnd
	}
	t.left -= n
	t.n += n
	return nil
}

// size reads a collection or binary size and checks that at least
// minBytes per element remain.
func (t *thriftReader) size(u uint64, minBytes int64) (int64, error) {
	if u > uint64(t.left/minBytes) {
		return 0, fmt.Errorf("thrift size %d exceeds the %d bytes left", u, t.left)
	}
	return int64(u), nil
}

// Thrift compact protocol types.
const (
	ctTrue   = 1
	ctFalse  = 2
	ctByte   = 3
	ctI16    = 4
	ctI32    = 5
	ctI64    = 6
	ctDouble = 7
	ctBinary = 8
	ctList   = 9
	ctSet    = 10
	ctMap    = 11
	ctStruct = 12
)

// skipStruct skips a struct. visit, when set, sees every integer field with
// its path of field ids from the outermost struct.
func (t *thriftReader) skipStruct(depth int, visit func(path []int16, v int64)) error {
	return t.walkStruct(depth, nil, visit)
}

func (t *thriftReader) walkStruct(depth int, path []int16, visit func([]int16, int64)) error {
	if depth > maxThriftDepth {
		return fmt.Errorf("thrift structures nested deeper than %d", maxThriftDepth)
	}
	var id int16
	for {
		b, err := t.byte()
		if err != nil {
			return err
		}
		if b == 0 {
			return nil // stop
		}
		typ := b & 0x0f
		if delta := int16(b >> 4); delta != 0 {
			id += delta
		} else {
			v, err := t.zigzag()
			if err != nil {
				return err
			}
			id = int16(v)
		}
		if typ == ctTrue || typ == ctFalse {
			// A field's boolean lives in its header.
			if visit != nil {
				visit(append(path, id), map[byte]int64{ctTrue: 1, ctFalse: 0}[typ])
			}
			continue
		}
		if err := t.walkValue(typ, depth, append(path, id), visit); err != nil {
			return err
		}
	}
}

func (t *thriftReader) walkValue(typ byte, depth int, path []int16, visit func([]int16, int64)) error {
	switch typ {
	case ctTrue, ctFalse, ctByte:
		_, err := t.byte()
		return err
	case ctI16, ctI32, ctI64:
		v, err := t.zigzag()
		if err == nil && visit != nil {
			visit(path, v)
		}
		return err
	case ctDouble:
		return t.skip(8)
	case ctBinary:
		u, err := t.uvarint()
		if err != nil {
			return err
		}
		n, err := t.size(u, 1)
		if err != nil {
			return err
		}
		return t.skip(n)
	case ctList, ctSet:
		h, err := t.byte()
		if err != nil {
			return err
		}
		u := uint64(h >> 4)
		if u == 15 {
			if u, err = t.uvarint(); err != nil {
				return err
			}
		}
		n, err := t.size(u, 1)
		if err != nil {
			return err
		}
		for range n {
			if err := t.walkValue(h&0x0f, depth+1, path, nil); err != nil {
				return err
			}
		}
		return nil
	case ctMap:
		u, err := t.uvarint()
		if err != nil {
			return err
		}
		n, err := t.size(u, 2)
		if err != nil || n == 0 {
			return err
		}
		kv, err := t.byte()
		if err != nil {
			return err
		}
		for range n {
			if err := t.walkValue(kv>>4, depth+1, path, nil); err != nil {
				return err
			}
			if err := t.walkValue(kv&0x0f, depth+1, path, nil); err != nil {
				return err
			}
		}
		return nil
	case ctStruct:
		return t.walkStruct(depth+1, path, visit)
	}
	return fmt.Errorf("unknown thrift type %d", typ)
}
