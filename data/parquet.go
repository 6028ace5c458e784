package data

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"unicode/utf8"

	"github.com/parquet-go/parquet-go"
)

// readParquet streams a Parquet file's rows through handle as JSON objects,
// so Parquet rows go through the same validation as JSON ones.
func readParquet(f *os.File, path string, handle func(string, []byte) error) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	unreadable := func(err error) error {
		return fmt.Errorf("%w: %s: not a readable Parquet file: %v", ErrInvalid, path, err)
	}
	footer, err := checkParquetFrame(f, fi.Size())
	if err != nil {
		return unreadable(err)
	}
	// Rows are streamed: the page index and bloom filters are not needed,
	// and not reading them is less of the file to trust.
	pf, err := parquet.OpenFile(f, fi.Size(), parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		return unreadable(err)
	}
	if err := checkParquetPages(f, pf.Metadata(), fi.Size()-8-footer); err != nil {
		return unreadable(err)
	}
	r := parquet.NewGenericReader[any](f, &parquet.ReaderConfig{Schema: pf.Schema()})
	defer r.Close()
	buf := make([]any, 256)
	row := 0
	for {
		n, err := r.Read(buf)
		for _, v := range buf[:n] {
			// json.Marshal would turn invalid UTF-8 into U+FFFD in silence.
			if field := invalidUTF8(v, ""); field != "" {
				return fmt.Errorf("%w: %s: row %d: column %q is not valid UTF-8", ErrInvalid, path, row, field)
			}
			b, merr := json.Marshal(jsonable(v))
			if merr != nil {
				return fmt.Errorf("%w: %s: row %d: %v", ErrInvalid, path, row, merr)
			}
			if herr := handle(fmt.Sprintf("row %d", row), b); herr != nil {
				return herr
			}
			row++
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %s: row %d: %v", ErrInvalid, path, row, err)
		}
	}
}

// jsonable turns byte strings into strings (json would base64 them).
func jsonable(v any) any {
	switch x := v.(type) {
	case []byte:
		return string(x)
	case map[string]any:
		for k, e := range x {
			x[k] = jsonable(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = jsonable(e)
		}
		return x
	}
	return v
}

// invalidUTF8 returns the field path of the first string in v that is not
// valid UTF-8 ("" when all are).
func invalidUTF8(v any, field string) string {
	switch x := v.(type) {
	case string:
		if !utf8.ValidString(x) {
			return field
		}
	case []byte:
		if !utf8.Valid(x) {
			return field
		}
	case map[string]any:
		for k, e := range x {
			name := k
			if field != "" {
				name = field + "." + k
			}
			if f := invalidUTF8(e, name); f != "" {
				return f
			}
		}
	case []any:
		for i, e := range x {
			if f := invalidUTF8(e, fmt.Sprintf("%s[%d]", field, i)); f != "" {
				return f
			}
		}
	}
	return ""
}
