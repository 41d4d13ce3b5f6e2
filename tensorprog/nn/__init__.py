"""Building blocks for writing architectures as programs.

Each block adds instructions to a program through the builder and returns the new variable, so
architectures compose like ordinary layer code while staying NETSOR⊤+ programs (the raw
instruction level, ``p.matrix``, ``W @ x``, ``tp.nonlin``, is always available).  Every block
uses the NTK parametrization (TP IIb Setup 5.2).
"""
from .activations import ACTIVATIONS, activation
from .attention import (embed_tokens, gather_token, pool_tokens, self_attention, sequence_layout,
                        token_index, transformer_block)
from .convolution import (Grid, conv, conv_embed, flatten_readout, global_avg_pool, image_family,
                   patches, shift)
from .dense import dense, readout
from .hypernet import generated_input, generated_matrix, generated_readout
from .norm import batch_norm, layer_norm
from .recurrent import gru_cell, rnn_cell
from .residual import residual

__all__ = ["ACTIVATIONS", "activation", "Grid", "conv", "conv_embed", "flatten_readout",
           "global_avg_pool", "image_family", "patches", "shift", "dense", "readout", "layer_norm",
           "batch_norm", "residual", "embed_tokens", "gather_token", "pool_tokens",
           "self_attention", "sequence_layout", "token_index", "transformer_block",
           "generated_input", "generated_matrix", "generated_readout", "rnn_cell", "gru_cell"]
