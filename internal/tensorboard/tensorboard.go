// Package tensorboard writes TensorBoard event files of scalar series, so
// that a run can be followed in TensorBoard beside metrics.jsonl. It keeps
// to what scalars need: TFRecord framing (each record's length and data
// guarded by a masked CRC-32C) around tensorflow.Event messages holding a
// Summary of simple values, encoded with the protobuf module's wire
// format helpers. Pure Go.
package tensorboard

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of tensorflow.Event and tensorflow.Summary
// (tensorflow/core/util/event.proto, tensorflow/core/framework/summary.proto).
const (
	eventWallTime    = 1 // double
	eventStep        = 2 // int64
	eventFileVersion = 3 // string
	eventSummary     = 5 // Summary
	summaryValue     = 1 // repeated Summary.Value
	valueTag         = 1 // string
	valueSimple      = 2 // float
)

// FileVersion is the first event of every file, as TensorBoard expects.
const FileVersion = "brain.Event:2"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// MaskedCRC is TFRecord's checksum: CRC-32C rotated right by 15 bits plus
// a constant, so that a CRC of data holding CRCs stays well distributed.
func MaskedCRC(b []byte) uint32 {
	c := crc32.Checksum(b, castagnoli)
	return (c>>15 | c<<17) + 0xa282ead8
}

// Writer appends events to one file. Each Scalars call is flushed to the
// file before it returns, so a crash loses no written step.
type Writer struct {
	f    *os.File
	w    *bufio.Writer
	path string
}

// Create starts a new event file in dir, named as TensorBoard looks for
// them (events.out.tfevents.<seconds>.<host>.<pid>.<n>.prism): a resumed run
// writes a new file, and TensorBoard drops the old file's points past the
// step where the new one starts.
func Create(dir string, now time.Time) (*Writer, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "localhost"
	}
	var f *os.File
	var path string
	for k := 0; ; k++ {
		// A start within the same second in the same process (a resume)
		// gets the next free suffix.
		path = filepath.Join(dir, fmt.Sprintf("events.out.tfevents.%d.%s.%d.%d.prism", now.Unix(), host, os.Getpid(), k))
		var err error
		if f, err = os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644); err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) || k >= 1000 {
			return nil, err
		}
	}
	w := &Writer{f: f, w: bufio.NewWriter(f), path: path}
	ev := protowire.AppendTag(nil, eventWallTime, protowire.Fixed64Type)
	ev = protowire.AppendFixed64(ev, math.Float64bits(seconds(now)))
	ev = protowire.AppendTag(ev, eventFileVersion, protowire.BytesType)
	ev = protowire.AppendString(ev, FileVersion)
	if err := w.record(ev); err != nil {
		f.Close()
		return nil, err
	}
	return w, nil
}

// Path is the event file's path.
func (w *Writer) Path() string { return w.path }

// Scalars writes one event at step holding every value, tags in sorted
// order (non-finite values are left out: TensorBoard cannot plot them).
func (w *Writer) Scalars(step int64, wall time.Time, values map[string]float64) error {
	tags := make([]string, 0, len(values))
	for k, v := range values {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			tags = append(tags, k)
		}
	}
	if len(tags) == 0 {
		return nil
	}
	sort.Strings(tags)
	var sum []byte
	for _, tag := range tags {
		var v []byte
		v = protowire.AppendTag(v, valueTag, protowire.BytesType)
		v = protowire.AppendString(v, tag)
		v = protowire.AppendTag(v, valueSimple, protowire.Fixed32Type)
		v = protowire.AppendFixed32(v, math.Float32bits(float32(values[tag])))
		sum = protowire.AppendTag(sum, summaryValue, protowire.BytesType)
		sum = protowire.AppendBytes(sum, v)
	}
	ev := protowire.AppendTag(nil, eventWallTime, protowire.Fixed64Type)
	ev = protowire.AppendFixed64(ev, math.Float64bits(seconds(wall)))
	ev = protowire.AppendTag(ev, eventStep, protowire.VarintType)
	ev = protowire.AppendVarint(ev, uint64(step))
	ev = protowire.AppendTag(ev, eventSummary, protowire.BytesType)
	ev = protowire.AppendBytes(ev, sum)
	return w.record(ev)
}

// record frames data as a TFRecord: length (uint64 LE), its masked CRC,
// the data, the data's masked CRC; then flushes.
func (w *Writer) record(data []byte) error {
	var head [12]byte
	binary.LittleEndian.PutUint64(head[:8], uint64(len(data)))
	binary.LittleEndian.PutUint32(head[8:], MaskedCRC(head[:8]))
	var tail [4]byte
	binary.LittleEndian.PutUint32(tail[:], MaskedCRC(data))
	w.w.Write(head[:])
	w.w.Write(data)
	w.w.Write(tail[:])
	if err := w.w.Flush(); err != nil {
		return fmt.Errorf("%s: %w", w.path, err)
	}
	return nil
}

// Close closes the file.
func (w *Writer) Close() error {
	if err := w.w.Flush(); err != nil {
		w.f.Close()
		return err
	}
	return w.f.Close()
}

func seconds(t time.Time) float64 { return float64(t.Unix()) + float64(t.Nanosecond())/1e9 }
