package torch

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/libtch"
)

// Device is where tensors live. It is resolved here, once per run or
// command, and passed down: nothing else names a device.
type Device = gotch.Device

// ResolveDevice turns a run.device value into a device: "cpu"; "cuda" or
// "cuda:N" (the first or the Nth card; an error when this libtorch sees
// none, or fewer); "auto" (the first card when there is one, else the
// CPU).
func ResolveDevice(name string) (Device, error) {
	cards := 0
	if libtch.AtcCudaIsAvailable() {
		cards = int(libtch.AtcCudaDeviceCount())
	}
	return resolveDevice(name, cards, libtch.PrismLibtorchCUDA)
}

// resolveDevice is ResolveDevice for a machine with the given number of
// usable cards, on a CUDA build of libtorch or not.
func resolveDevice(name string, cards int, cudaBuild bool) (Device, error) {
	switch {
	case name == "" || name == "cpu":
		return gotch.CPU, nil
	case name == "auto":
		if cards > 0 {
			return gotch.CudaBuilder(0), nil
		}
		return gotch.CPU, nil
	case name == "cuda" || strings.HasPrefix(name, "cuda:"):
		idx := 0
		if s, ok := strings.CutPrefix(name, "cuda:"); ok {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 {
				return gotch.CPU, fmt.Errorf("device %q: want cuda:N with N a card number from 0", name)
			}
			idx = n
		}
		switch {
		case !cudaBuild:
			return gotch.CPU, fmt.Errorf("device %q: this libtorch is a CPU build (see prism version; LIBTORCH= a CUDA libtorch)", name)
		case cards == 0:
			return gotch.CPU, fmt.Errorf("device %q: this CUDA build of libtorch sees no usable card (driver, CUDA_VISIBLE_DEVICES?)", name)
		case idx >= cards:
			return gotch.CPU, fmt.Errorf("device %q: this machine has %d usable card(s), cuda:0 to cuda:%d", name, cards, cards-1)
		}
		return gotch.CudaBuilder(uint(idx)), nil
	}
	return gotch.CPU, fmt.Errorf("device %q: want auto, cpu, cuda or cuda:N", name)
}

// DeviceName is how prism writes a device: cpu or cuda:N.
func DeviceName(d Device) string {
	if d.IsCuda() {
		return fmt.Sprintf("cuda:%d", d.Value)
	}
	return "cpu"
}

// CPU is the host's device: where values come from and go back to.
func CPU() Device { return gotch.CPU }

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
