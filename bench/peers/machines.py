"""The workload and the two GPUs every peer script configures, in ONE place (plain Python, no imports: the
peer tools run in their own venvs under $PEERS (a folder outside the repository), never the project's).

Ideal roofline on purpose (every efficiency 1): the comparison is then definitional -- the same peak rate,
bandwidth and bytes must give the same time, and any difference is a difference in what is counted.
"""

# LLaMA-2-7B, batch 1, fp16 weights / activations / KV cache.
MODEL = "llama-2-7b"
BATCH = 1
BYTES_PER_VALUE = 2  # fp16
DECODE_CONTEXT = 2048  # cached positions the decoded token attends to (plus itself)
PREFILL_TOKENS = 2048

# Datasheet figures (dense fp16 tensor-core rate; HBM bandwidth in bytes/s, decimal).
GPUS = {
    "h100-sxm": {
        "description": "NVIDIA H100 SXM5 80 GB: 132 SMs x 4 tensor cores x 512 fp16 MACs at 1.83 GHz; HBM3 3.35 TB/s",
        "flops": 132 * 4 * 512 * 2 * 1.83e9,  # 989.4e12 FLOP/s dense fp16
        "mem_bytes_per_s": 3.35e12,
        "mem_gb": 80,
    },
    "a100-sxm-80gb": {
        "description": "NVIDIA A100 SXM 80 GB: 108 SMs x 4 tensor cores x 256 fp16 MACs at 1.41 GHz; HBM2e 2.039 TB/s",
        "flops": 108 * 4 * 256 * 2 * 1.41e9,  # 311.9e12 FLOP/s dense fp16 (datasheet: 312)
        "mem_bytes_per_s": 2.039e12,
        "mem_gb": 80,
    },
}
