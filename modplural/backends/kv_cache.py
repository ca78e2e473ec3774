"""A KV cache that writes new keys and values into preallocated buffers instead of concatenating.

transformers' ``DynamicCache`` grows each layer with ``torch.cat``, copying the whole cache at every decoding
step; on a CPU that was 22% of a batched decoding run (profiled in ``experiments/performance/benchmark.py --profile``).
Here each full-attention layer reserves room for the prompt plus the new tokens once and hands attention
a view of the filled part, so the values attention sees are the same and only the copies go away.
Sliding-window and other special layers keep transformers' own implementation.
"""

from __future__ import annotations

from transformers.cache_utils import DynamicCache, DynamicLayer


class PreallocatedLayer(DynamicLayer):
    """A ``DynamicLayer`` whose keys/values live in buffers of ``capacity`` positions (grown if ever exceeded)."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self.length = 0
        self._k = self._v = None

    def lazy_initialization(self, key_states, value_states) -> None:
        super().lazy_initialization(key_states, value_states)
        self._k = key_states.new_empty(*key_states.shape[:2], self.capacity, key_states.shape[-1])
        self._v = value_states.new_empty(*value_states.shape[:2], self.capacity, value_states.shape[-1])
        self.length = 0

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        new = key_states.shape[-2]
        if self.length + new > self._k.shape[-2]:
            grow = max(self.length + new, 2 * self._k.shape[-2])
            self._k = _resized(self._k, grow, self.length)
            self._v = _resized(self._v, grow, self.length)
        self._k[:, :, self.length : self.length + new] = key_states
        self._v[:, :, self.length : self.length + new] = value_states
        self.length += new
        self.keys, self.values = self._k[:, :, : self.length], self._v[:, :, : self.length]
        return self.keys, self.values

    def batch_select_indices(self, indices) -> None:
        if self.is_initialized:
            self._k, self._v = self._k[indices], self._v[indices]
            self.keys, self.values = self._k[:, :, : self.length], self._v[:, :, : self.length]


def _resized(buffer, capacity: int, filled: int):
    out = buffer.new_empty(*buffer.shape[:2], capacity, buffer.shape[-1])
    out[:, :, :filled] = buffer[:, :, :filled]
    return out


def preallocated_cache(config, capacity: int) -> DynamicCache:
    """A ``DynamicCache`` for ``config`` whose plain full-attention layers are ``PreallocatedLayer`` s."""
    cache = DynamicCache(config=config)
    cache.layers = [PreallocatedLayer(capacity) if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache
