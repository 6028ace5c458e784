package torch

import (
	"fmt"

	"github.com/sugarme/gotch"
)

// Device is where tensors live. It is resolved here, once per run or
// command, and passed down: nothing else names a device.
type Device = gotch.Device

// ResolveDevice turns a run.device value into a device. Prism trains on
// the CPU today; "cpu" is the only value configs accepts.
func ResolveDevice(name string) (Device, error) {
	switch name {
	case "", "cpu":
		return gotch.CPU, nil
	}
	return gotch.CPU, fmt.Errorf("device %q is not supported (prism runs on the CPU)", name)
}

// DefaultDevice is the device of commands that take no run.device
// (score, eval, decompose).
func DefaultDevice() Device { return gotch.CPU }

// DType is a tensor element type.
type DType = gotch.DType

// ResolveDType turns a model.dtype value into the dtype weights are kept
// in. Prism trains in float32 today; "float32" is the only value configs
// accepts.
func ResolveDType(name string) (DType, error) {
	switch name {
	case "", "float32":
		return gotch.Float, nil
	}
	return gotch.Float, fmt.Errorf("dtype %q is not supported (prism trains in float32)", name)
}
