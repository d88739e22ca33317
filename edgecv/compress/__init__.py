"""Deep Compression stages (Han, Mao, Dally, ICLR 2016, arXiv:1510.00149) and YAML recipes.

Stages (registered in ``STAGES`` by their recipe name): ``equalize`` (per-channel rescaling of
conv -> BN pairs, for weights with folded BatchNorm), ``prune`` (magnitude pruning, Han et
al. 2015), ``structured_prune`` (filter pruning via torch-pruning), ``share`` (k-means weight
sharing + centroid fine-tuning), ``finetune`` (retraining that keeps masks and sharing) and
``huffman`` (encoding choices). ``to_layer_codes`` turns the result into codec input.
"""
from __future__ import annotations

from edgecv.compress.base import (STAGES, Context, MaskedTraining, Origin, SharedWeight, Stage, TrainOptions,
                                  centroid_gradient, register_stage, retrain)
from edgecv.compress.channel_prune import StructuredPrune, StructuredPruneConfig
from edgecv.compress.equalize import Equalize, EqualizeConfig, conv_bn_pairs
from edgecv.compress.distill import Distill, DistillConfig, DistillLoss, distillation_loss
from edgecv.compress.finetune import Finetune, FinetuneConfig
from edgecv.compress.huffman_stage import Huffman, HuffmanConfig, to_layer_codes
from edgecv.compress.prune import Prune, PruneConfig, allocate, keep_count, magnitude_mask, sensitivity_scan
from edgecv.compress.quantize import Quantize, QuantizeConfig, quant_codes, quantizer_meta, restore_fake_quant
from edgecv.compress.recipe import Recipe, builtin_recipes, load_recipe, parse_recipe
from edgecv.compress.share import Share, ShareConfig, kmeans_1d, nearest, share_weight
from edgecv.compress.targets import compressible, resolve, resolve_values

__all__ = [
    "STAGES", "Context", "MaskedTraining", "Origin", "SharedWeight", "Stage", "TrainOptions",
    "centroid_gradient", "register_stage", "retrain",
    "Prune", "PruneConfig", "allocate", "keep_count", "magnitude_mask", "sensitivity_scan",
    "StructuredPrune", "StructuredPruneConfig",
    "Share", "ShareConfig", "kmeans_1d", "nearest", "share_weight",
    "Equalize", "EqualizeConfig", "conv_bn_pairs",
    "Distill", "DistillConfig", "DistillLoss", "distillation_loss",
    "Finetune", "FinetuneConfig",
    "Huffman", "HuffmanConfig", "to_layer_codes",
    "Quantize", "QuantizeConfig", "quant_codes", "quantizer_meta", "restore_fake_quant",
    "Recipe", "builtin_recipes", "load_recipe", "parse_recipe",
    "compressible", "resolve", "resolve_values",
]


from edgecv._callable import make_callable  # noqa: E402  edgecv.compress(...) is the API function

make_callable(__name__)
