"""The bundle kinds of compact models (`ModelConfig.kind`), named once for every module of the package."""

KIND_QUANTIZED = "quantized"  # weights stored as codes + codebooks (or float16 / float32), see quantize.py
KIND_MERGED = "merged"  # several members' weighted mean in one bundle, see merge.py
KIND_EMA_STAGE = "ema-stage"  # fine-tuned with the seed's EMA of every weight, see ema.py
