// Next-token cross-entropy fused with the output projection, computed in chunks of tokens:
// logits [chunk, vocab] exist one chunk at a time (a Llama-3 vocabulary makes the whole
// [B * T, vocab] float32 tensor gigabytes). When gradients are wanted, each chunk's gradients
// with respect to the hidden states and the weight are formed right away, so backward is a
// scale and no logits are kept for it.
#pragma once

#include <ATen/ATen.h>

namespace ftune::model {

// Sum over the tokens whose label is not `ignore_label` of -log softmax(h W^T)[label], in
// float32 (logits are upcast per chunk, as HF upcasts them). hidden [N, H], weight [V, H],
// labels [N] int64. Differentiable in hidden and weight.
at::Tensor linear_cross_entropy_sum(const at::Tensor& hidden, const at::Tensor& weight,
                                    const at::Tensor& labels, int64_t ignore_label,
                                    int64_t chunk_tokens);

// For evaluation, without gradients: float32 [2] = {summed cross-entropy, tokens whose most
// likely next token is the label}, over the tokens whose label is not `ignore_label`.
at::Tensor cross_entropy_stats(const at::Tensor& hidden, const at::Tensor& weight,
                               const at::Tensor& labels, int64_t ignore_label, int64_t chunk_tokens);

}  // namespace ftune::model
