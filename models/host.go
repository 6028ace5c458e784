package models

import (
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"prism/internal/torch"
)

// onDevice makes a tensor of the given shape and dtype from host bytes,
// placed on device. It is the one way host values (weights, token ids,
// masks, margins, optimizer state, tables) enter a model's tensors:
// TestHostValuesGoThroughOnDevice checks that nothing else in this package
// makes a tensor from host memory, and that every other constructor is
// given the model's device, so no tensor is left on the CPU by mistake.
func onDevice(raw []byte, shape []int64, dt gotch.DType, device torch.Device) (*ts.Tensor, error) {
	t, err := ts.OfDataSize(raw, shape, dt)
	if err != nil || device == torch.CPU() {
		return t, err
	}
	return t.To(device, true)
}
