"""A wider DCGAN grown from a trained one (`--init-from MODEL --width W`, W above the model's width): every layer
keeps its trained weights and gains channels, and the grown G and D compute exactly what the model's did, so
training goes on from the model's quality with more capacity (the aim of Net2Net, Chen et al., 2016).

Net2Net copies units and halves their fan-out; under spectral norm a copied unit changes the layer's gain, so
here a new channel instead gets fresh incoming weights and zero outgoing ones: the old outputs do not change,
and the zero weights learn first (their gradient is the new channel's activation, which is not zero).
- G: new incoming weights are DCGAN's N(0, 0.02); batch norm's new channels start as a fresh layer's.
- D: a spectral-normed layer divides by its gain estimated as u^T W v from stored power-iteration vectors. New
  rows orthogonal to the old ones, with u and v padded with zeros, leave that estimate and all its next
  iterations unchanged, and new rows 10 times quieter than the trained ones leave the layer's true gain too.
The EMA generator grows with the same new weights as G (one seeded draw each), so their average starts right.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

NEW_ROW_SCALE = 0.1  # a new D row's norm against the trained rows' mean norm
DCGAN_STD = 0.02


def grow_state(state: dict[str, torch.Tensor], wide: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """`state` (of a narrower network of the same family) as a state dict of `wide`: old weights in place, new
    channels as this module's docstring says, drawn from `seed`."""
    generator = torch.Generator().manual_seed(seed)
    grown: dict[str, torch.Tensor] = {}
    for name, layer in wide.named_modules():
        if "parametrizations" in name.split("."):  # a spectral norm's own modules: its layer grows them
            continue
        own = {key: value for key, value in layer.state_dict().items() if "." not in key or
               key.startswith("parametrizations.weight.")}
        if not own:
            continue
        prefix = f"{name}." if name else ""
        old = {key: state[prefix + key] for key in own}
        grown |= {prefix + key: value for key, value in grown_layer(layer, old, own, generator).items()}
    missing = set(wide.state_dict()) - set(grown)
    if missing:
        raise ValueError(f"cannot grow {sorted(missing)[:3]}: not a layer gancli knows how to widen")
    return grown


def grown_layer(layer: nn.Module, old: dict[str, torch.Tensor], new: dict[str, torch.Tensor],
                generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The tensors of one layer at `new`'s shapes from its `old` ones."""
    if all(old[key].shape == new[key].shape for key in new):
        return {key: value.clone() for key, value in old.items()}
    if isinstance(layer, nn.modules.batchnorm._BatchNorm):
        fresh = {"weight": 1.0, "bias": 0.0, "running_mean": 0.0, "running_var": 1.0}
        return {key: padded(old[key], new[key].shape, fresh[key]) if key in fresh else old[key].clone()
                for key in new}
    out_axis = 1 if isinstance(layer, nn.ConvTranspose2d) else 0  # the axis of output channels in the weight
    if parametrize.is_parametrized(layer, "weight"):
        grown = grown_spectral_normed(old, new, out_axis, generator)
    else:
        grown = {"weight": grown_weight(old["weight"], new["weight"].shape, out_axis, generator)}
    if "bias" in new:
        grown["bias"] = padded(old["bias"], new["bias"].shape, 0.0)
    return grown


def padded(old: torch.Tensor, shape: torch.Size, fill: float) -> torch.Tensor:
    """`old` in the leading corner of a tensor of `shape` filled with `fill`."""
    out = torch.full(shape, fill, dtype=old.dtype)
    out[tuple(slice(0, n) for n in old.shape)] = old
    return out


def grown_weight(old: torch.Tensor, shape: torch.Size, out_axis: int, generator: torch.Generator) -> torch.Tensor:
    """New output channels drawn from N(0, 0.02) over every input; new inputs of the old outputs at zero."""
    weight = torch.randn(shape, generator=generator, dtype=old.dtype) * DCGAN_STD
    old_outputs = [slice(None)] * len(shape)
    old_outputs[out_axis] = slice(0, old.shape[out_axis])
    weight[tuple(old_outputs)] = 0
    weight[tuple(slice(0, n) for n in old.shape)] = old
    return weight


def grown_spectral_normed(old: dict[str, torch.Tensor], new: dict[str, torch.Tensor], out_axis: int,
                          generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A spectral-normed weight whose new rows are orthogonal to every old row, and its u and v padded with zeros.

    The power iteration then never leaves the old rows' span (W'^T [u, 0] = [W^T u, 0], which the new rows map to
    0), so every estimate of the gain is the narrow layer's; and the true gain is max(old gain, new rows' gain),
    the old one while the new rows are as quiet as NEW_ROW_SCALE makes them."""
    key_w, key_u, key_v = "parametrizations.weight.original", "parametrizations.weight.0._u", "parametrizations.weight.0._v"
    w_old, shape = old[key_w], new[key_w].shape
    n_old, n_in, n_in_old = w_old.shape[out_axis], shape[1 - out_axis], w_old.shape[1 - out_axis]

    def over_new_inputs(m: torch.Tensor) -> torch.Tensor:
        """Columns over the old inputs' (channel, kernel position) as columns over the new ones, zero for new."""
        return padded(m.reshape(n_in_old, -1, m.shape[-1]), torch.Size((n_in, m.numel() // (n_in_old * m.shape[-1]),
                                                                        m.shape[-1])), 0.0).flatten(0, 1)

    old_rows = w_old.movedim(out_axis, 0).flatten(1)
    basis = over_new_inputs(torch.linalg.qr(old_rows.T).Q)  # orthonormal columns spanning the old rows
    weight = grown_weight(w_old, shape, out_axis, generator).movedim(out_axis, 0)
    rows = weight.flatten(1)  # a view: what is written to it is written to `weight`
    fresh = rows[n_old:] - (rows[n_old:] @ basis) @ basis.T
    scale = NEW_ROW_SCALE * old_rows.norm(dim=1).mean() / fresh.norm(dim=1).clamp_min(1e-12)
    rows[n_old:] = fresh * scale[:, None]
    return {key_w: weight.movedim(0, out_axis).contiguous(), key_u: padded(old[key_u], new[key_u].shape, 0.0),
            key_v: over_new_inputs(old[key_v][:, None]).flatten()}
