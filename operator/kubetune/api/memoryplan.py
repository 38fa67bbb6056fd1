"""A memory plan before submit: per-device peak memory and GPU-hours of a FineTuneJob, from config.json alone.

`plan(spec, model_config)` estimates what one device (GPU, or the pod's memory on CPU) holds at the peak of
a training step, and whether it fits. Pure: stdlib and pydantic only, so the operator (no torch), the CLI and
the trainer import the same numbers. Reading config.json from hf://, pvc:// or a path is
`kubetune.api.modelconfig`.

Formulas (P parameters, N shard degree, b micro-batch, s sequence length, h hidden, L layers, I MLP width,
kv the key/value width = kv_heads x head_dim, q the query width = heads x head_dim (head_dim from config.json,
else h / heads, so q = h for most models; Qwen3-32B: h 5120, q 8192), V vocabulary, d bytes of an activation element):

- Parameters: Llama/Qwen2/Mistral-style decoder counted from the config: embeddings V h (and an untied
  head V h), per layer q/o 2 h q, k/v 2 h kv (+ biases when `attention_bias`/Qwen2; Qwen3's q/k norms 2 head_dim), SwiGLU 3 h I (MoE:
  experts x 3 h I_expert + a router h x experts), two RMSNorms.
- Full fine-tuning with mixed-precision Adam: 16 bytes per parameter (ZeRO, Rajbhandari et al. 2020, sec.
  3.1: 2 fp16 weights + 2 fp16 gradients + 12 fp32 master weights, momentum and variance). kubetune's trainer
  keeps fp32 weights under autocast instead, which is the same 16 bytes split 4 (weights) + 4 (gradients) + 8
  (Adam's two moments); autocast keeps a bf16 copy of each weight for the step (+2 bytes per parameter).
  On CPU everything is fp32: 4 + 4 + 8.
- LoRA (Hu et al. 2021): the frozen base in bf16 on a GPU (fp32 on CPU), 2 (4) bytes per parameter, no
  gradients or optimizer state for it; the adapter is r (in + out) per targeted linear layer, trained in fp32
  with Adam: 16 bytes per adapter parameter.
- QLoRA (Dettmers et al. 2023, sec. 3): targeted linear weights in 4-bit NF4, 0.5 byte per parameter, plus
  quantisation constants: one fp32 constant per block of 64 (0.5 bit per parameter), 0.127 bit with double
  quantisation (the default here). Embeddings, norms and the head are not quantised;
  `prepare_model_for_kbit_training` upcasts them to fp32 (4 bytes each).
- FSDP (ZeRO-3 / PyTorch FSDP2 `fully_shard`): weights, gradients and optimizer state are divided by the
  number of GPUs N; each GPU also holds the unsharded weights (and gradients) of the layer being computed
  and the one prefetched: 2 layers x (weights + gradients) in the compute dtype. CPU offload moves the
  sharded state to host memory.
- Activations per layer and token, without recomputation: Korthikanti et al. 2022, "Reducing Activation
  Recomputation in Large Transformer Models", eq. 1: s b h (34 + 5 a s / h) bytes for a GPT layer with fp16
  activations and dropout. For the layers trained here (RMSNorm, rotary embeddings, SwiGLU, grouped-query
  attention, no dropout, fused SDPA/flash attention which keeps no s x s matrix, so the 5 a s / h term
  drops out) the same counting of the tensors kept for backward gives (4 h + 4 q + 3 kv + 4 I) elements (8 h + 3 kv + 4 I
  when q = h): the two norms' inputs and outputs (4 h), q and k before the rotary embedding (q + kv), q, k, v
  after it (q + 2 kv), the attention output and o_proj's input (2 q), SwiGLU's gate, up, activation and product (4 I).
  Times d bytes (2 in bf16, 4 in fp32) and b s tokens, times L.
- With activation checkpointing (Chen et al. 2016; the HF `gradient_checkpointing`): each layer keeps
  only its input, b s h d bytes, and one layer's full activations exist during its recomputation, in the
  backward pass, after the logits are freed: layer inputs + max(logits, one layer recomputed + its
  backward's temporaries), not inputs + one layer + logits (that over-estimated the measured peak by a third).
- A layer's backward temporaries: the gradients of SwiGLU's gate and up outputs and of the layer's input and
  output alive together, (2 I + 2 h) elements per token (measured: the tiny model's checkpointed peak is
  inputs + one layer + these within a few per cent).
- Logits: b s V elements in the compute dtype, their fp32 copy for the loss (GPU), the fp32 log-softmax
  kept for backward and its fp32 gradient (4 + 4 + 4 bytes on CPU, where the copy is free). Liger's fused
  linear cross-entropy (on GPU when installed) avoids most of it; the plan does not assume it.
- GPU-hours: 6 P FLOPs per trained token for full fine-tuning (2 P forward, 4 P backward; Kaplan et al.
  2020) plus attention 12 L h s (Narayanan et al. 2021); LoRA skips the weight gradients of the base: 4 P;
  checkpointing recomputes the forward: + 2 P. At an assumed model-FLOPs utilisation of a stated peak.

Checked against measured peaks (benchmarks/memory_plan.py, results in benchmarks/README.md).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from kubetune.api.finetunejob import FineTuneJobSpec

GiB = 1024**3
Sharding = Literal["none", "fsdp"]

DEFAULT_GPU_MEMORY_GIB = 80.0  # an H100/A100 80 GB when the spec does not say which GPU
DEFAULT_PEAK_TFLOPS = 989.0  # H100 SXM dense bf16 (datasheet, without sparsity)
DEFAULT_MFU = 0.35  # model-FLOPs utilisation a tuned fine-tuning run reaches on H100-class GPUs
CUDA_OVERHEAD_BYTES = int(1.0 * GiB)  # CUDA context, cuBLAS/NCCL workspaces
USABLE_FRACTION = 0.95  # the caching allocator's fragmentation: plan to fill at most 95 % of the device
QLORA_BITS_PER_PARAM = 4 + 0.127  # NF4 + double-quantised constants (QLoRA paper, sec. 3)

# (label fragment, memory GiB, dense bf16 TFLOP/s) for nvidia.com/gpu.product node labels; the first match wins.
GPU_PRODUCTS: tuple[tuple[str, float, float], ...] = (
    ("H200", 141.0, 989.0),
    ("H100", 80.0, 989.0),
    ("A100-SXM4-40GB", 40.0, 312.0),
    ("A100-PCIE-40GB", 40.0, 312.0),
    ("A100", 80.0, 312.0),
    ("L40S", 48.0, 362.0),
    ("L40", 48.0, 181.0),
    ("A10G", 24.0, 125.0),
    ("A10", 24.0, 125.0),
    ("L4", 24.0, 121.0),
    ("T4", 16.0, 65.0),
    ("V100", 32.0, 125.0),
)


class ModelConfigError(ValueError):
    """config.json lacks what the plan needs (not a decoder language model kubetune knows)."""


@dataclass(frozen=True)
class ModelShape:
    """What the plan needs from a Hugging Face config.json."""

    hidden: int
    layers: int
    intermediate: int
    vocab: int
    heads: int
    kv_heads: int
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    experts: int = 0  # MoE: experts per layer (0: dense)
    expert_intermediate: int = 0
    torch_dtype: str | None = None
    head_dim: int = 0  # config.json's head_dim (Qwen3: heads x head_dim != hidden); 0: hidden // heads
    qk_norm: bool = False  # Qwen3: an RMSNorm of head_dim on q and on k in every layer

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> ModelShape:
        if not isinstance(cfg, dict):
            raise ModelConfigError(f"config.json is a JSON {type(cfg).__name__}, not an object of model settings")
        if "text_config" in cfg and not isinstance(cfg["text_config"], dict):
            raise ModelConfigError("config.json: text_config is not an object")
        cfg = {**cfg.get("text_config", {}), **cfg} if "hidden_size" not in cfg else cfg
        missing = [k for k in ("hidden_size", "num_hidden_layers", "vocab_size") if not isinstance(cfg.get(k), int)]
        if missing:
            raise ModelConfigError(f"config.json: no {', '.join(missing)}: not a decoder language model")
        _check_positive(cfg)
        hidden = cfg["hidden_size"]
        heads = int(cfg.get("num_attention_heads") or max(1, hidden // 64))
        experts = int(cfg.get("num_local_experts") or cfg.get("num_experts") or cfg.get("n_routed_experts") or 0)
        return cls(
            hidden=hidden,
            layers=cfg["num_hidden_layers"],
            intermediate=int(cfg.get("intermediate_size") or 4 * hidden),
            vocab=cfg["vocab_size"],
            heads=heads,
            kv_heads=int(cfg.get("num_key_value_heads") or heads),
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            attention_bias=bool(cfg.get("attention_bias", cfg.get("model_type") == "qwen2")),
            experts=experts,
            expert_intermediate=int(cfg.get("moe_intermediate_size") or cfg.get("intermediate_size") or 0)
            if experts
            else 0,
            torch_dtype=cfg.get("torch_dtype") or cfg.get("dtype"),
            head_dim=int(cfg.get("head_dim") or 0),
            qk_norm=str(cfg.get("model_type", "")).startswith("qwen3"),
        )

    @property
    def head_size(self) -> int:
        return self.head_dim or self.hidden // self.heads

    @property
    def q_dim(self) -> int:
        """q_proj's output and o_proj's input: heads x head_dim (the hidden size unless config.json says otherwise)."""
        return self.heads * self.head_size

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_size

    @property
    def attention_params(self) -> int:
        h, q, kv = self.hidden, self.q_dim, self.kv_dim
        norms = 2 * self.head_size if self.qk_norm else 0
        return 2 * h * q + 2 * h * kv + ((q + 2 * kv) if self.attention_bias else 0) + norms

    @property
    def mlp_params(self) -> int:
        if self.experts:
            return self.experts * 3 * self.hidden * self.expert_intermediate + self.hidden * self.experts
        return 3 * self.hidden * self.intermediate

    @property
    def layer_params(self) -> int:
        return self.attention_params + self.mlp_params + 2 * self.hidden

    @property
    def embedding_params(self) -> int:
        """Embeddings and the head (one matrix when tied)."""
        return self.vocab * self.hidden * (1 if self.tie_word_embeddings else 2)

    @property
    def parameters(self) -> int:
        return self.layers * self.layer_params + self.embedding_params + self.hidden

    @property
    def linear_params(self) -> int:
        """Weights of the decoder layers' linear projections: what LoRA targets (all-linear) and NF4 stores."""
        return self.layers * (2 * self.hidden * self.q_dim + 2 * self.hidden * self.kv_dim + self.mlp_params)

    def lora_params(self, r: int, target_modules: str) -> int:
        """r x (in + out) for every targeted projection of every layer (all-linear: q,k,v,o,gate,up,down)."""
        h, q, kv, inter = self.hidden, self.q_dim, self.kv_dim, self.expert_intermediate or self.intermediate
        mult = self.experts or 1
        shapes = {
            "q_proj": (h, q),
            "k_proj": (h, kv),
            "v_proj": (h, kv),
            "o_proj": (q, h),
            "gate_proj": (h, inter),
            "up_proj": (h, inter),
            "down_proj": (inter, h),
        }
        wanted = shapes if target_modules == "all-linear" else {m.strip() for m in target_modules.split(",")}
        per_layer = sum(
            r * (i + o) * (mult if name.endswith(("gate_proj", "up_proj", "down_proj")) else 1)
            for name, (i, o) in shapes.items()
            if name in wanted
        )
        return self.layers * per_layer

    def activation_elements_per_token(self) -> int:
        """Elements one layer keeps for backward per token (see the module docstring)."""
        inter = self.expert_intermediate or self.intermediate  # MoE: a token goes through top-k experts
        return 4 * self.hidden + 4 * self.q_dim + 3 * self.kv_dim + 4 * inter


_POSITIVE_KEYS = (
    "hidden_size",
    "num_hidden_layers",
    "vocab_size",
    "intermediate_size",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
)


def _check_positive(cfg: dict[str, Any]) -> None:
    """Sizes must be positive integers: a zero or negative one would plan a model of no or negative bytes."""
    for key in _POSITIVE_KEYS:
        value = cfg.get(key)
        if value is None and key not in ("hidden_size", "num_hidden_layers", "vocab_size"):
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ModelConfigError(f"config.json: {key} is {value!r}, not a positive integer")


@dataclass(frozen=True)
class Layout:
    """One way to run the job: what the plan varies when it looks for a layout that fits."""

    adapter: str  # lora | qlora | none
    sharding: Sharding
    checkpointing: bool
    batch: int
    offload: bool = False


@dataclass(frozen=True)
class MemoryPlan:
    """Per-device peak memory of one training step, and the GPU-hours of the run. Bytes throughout."""

    model: str
    parameters: int
    trainable: int
    device: Literal["gpu", "cpu"]
    world_size: int  # GPUs (processes) in the run
    layout: Layout
    requested_sharding: str
    parameter_bytes: int  # the model's weights: fp32/bf16 (sharded under FSDP), or the non-quantised part
    gradient_bytes: int
    optimizer_bytes: int
    adapter_bytes: int  # LoRA weights + gradients + Adam state
    quantized_bytes: int  # 4-bit NF4 weights and their constants (QLoRA)
    activations_no_checkpointing: int
    activations_checkpointing: int  # the layer inputs kept; one layer is recomputed in backward (recompute_bytes)
    logits_bytes: int
    recompute_bytes: int  # one layer's activations, recomputed in backward under checkpointing
    backward_temporaries_bytes: int  # one layer's activation gradients during its backward
    overhead_bytes: int
    device_memory: int
    device_memory_source: str
    fits: bool
    recommended_sharding: Sharding
    tokens: int | None
    gpu_hours: float | None
    throughput_assumption: str
    suggestion: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    host_offload_bytes: int = 0  # CPU offload: the sharded state every GPU of a node keeps in the pod's memory
    host_memory: int = 0  # resources.memory of one pod (node), what the offloaded state must fit

    @property
    def activation_bytes(self) -> int:
        """Activations of the layout as planned (with or without checkpointing)."""
        return self.activations_checkpointing if self.layout.checkpointing else self.activations_no_checkpointing

    @property
    def layer_backward_bytes(self) -> int:
        """What one layer's backward adds: its temporaries, and its recomputed activations under checkpointing."""
        return self.backward_temporaries_bytes + (self.recompute_bytes if self.layout.checkpointing else 0)

    @property
    def peak_bytes(self) -> int:
        """Weights, optimizer state and adapter stay all step; gradients grow while activations are freed.

        Backward frees each layer's activations as it writes that layer's gradients (and the optimizer step
        runs after both), so the peak is the larger of the forward's end (activations + logits) and the
        backward's end (all gradients), not their sum. The logits are freed before the last layer's
        backward starts, so they and one layer's backward (recomputation included) are not alive together.
        """
        resident = (
            self.parameter_bytes
            + self.optimizer_bytes
            + self.adapter_bytes
            + self.quantized_bytes
            + self.overhead_bytes
        )
        transient = self.activation_bytes + max(self.logits_bytes, self.layer_backward_bytes)
        return resident + max(transient, self.gradient_bytes)

    def summary(self) -> str:
        """One line: peak per device, whether it fits, GPU-hours (for status and validate notes)."""
        unit = "GPU" if self.device == "gpu" else "pod (CPU)"
        hours = f", ~{self.gpu_hours:,.1f} GPU-hours" if self.gpu_hours is not None else ""
        verdict = "fits" if self.fits else "does NOT fit"
        if self.host_offload_bytes:
            hours += (
                f"; CPU offload {_gib(self.host_offload_bytes)} per node of resources.memory {_gib(self.host_memory)}"
            )
        return (
            f"{_gib(self.peak_bytes)} per {unit} of {_gib(self.device_memory)} ({verdict}; "
            f"{self.layout.adapter if self.layout.adapter != 'none' else 'full'}, sharding {self.layout.sharding}, "
            f"checkpointing {'on' if self.layout.checkpointing else 'off'}, {self.world_size} device(s)){hours}"
        )

    def render(self) -> str:
        unit = "GPU" if self.device == "gpu" else "CPU pod"
        shard = f"/{self.world_size}" if self.layout.sharding == "fsdp" else ""
        rows = [
            (f"parameters{shard}", self.parameter_bytes),
            (f"gradients{shard}", self.gradient_bytes),
            (f"optimizer state (Adam){shard}", self.optimizer_bytes),
            ("LoRA adapter (weights, gradients, Adam)", self.adapter_bytes),
            ("4-bit base weights (NF4 + constants)", self.quantized_bytes),
            (
                "activations" + (" (checkpointing on)" if self.layout.checkpointing else " (checkpointing off)"),
                self.activation_bytes,
            ),
            ("logits and loss", self.logits_bytes),
            (
                "one layer's backward" + (" (recomputed)" if self.layout.checkpointing else ""),
                self.layer_backward_bytes,
            ),
            ("CUDA context and workspaces" if self.device == "gpu" else "runtime", self.overhead_bytes),
        ]
        lines = [
            f"model {self.model}: {self.parameters / 1e9:.2f}B parameters, {self.trainable / 1e6:,.1f}M trainable; "
            f"{self.world_size} {unit}(s), sharding {self.layout.sharding}"
            + (" with CPU offload" if self.layout.offload else "")
            + f", micro-batch {self.layout.batch}",
        ]
        lines += [f"  {name:<44} {_gib(value):>10}" for name, value in rows if value]
        other = self.activations_checkpointing if not self.layout.checkpointing else self.activations_no_checkpointing
        lines.append(
            f"  {'(activations with checkpointing ' + ('on' if not self.layout.checkpointing else 'off') + ')':<44}"
            f" {_gib(other):>10}"
        )
        gpu_fits = self.peak_bytes <= USABLE_FRACTION * self.device_memory
        lines.append(
            f"  {'peak per ' + unit:<44} {_gib(self.peak_bytes):>10}  of {_gib(self.device_memory)} "
            f"({self.device_memory_source}; {USABLE_FRACTION:.0%} usable, {_gib(USABLE_FRACTION * self.device_memory)})"
            f": {'fits' if gpu_fits else 'does NOT fit'}"
        )
        if self.host_offload_bytes:
            host_fits = self.host_offload_bytes <= USABLE_FRACTION * self.host_memory
            lines.append(
                f"  {'CPU offload: host memory per node':<44} {_gib(self.host_offload_bytes):>10}  of "
                f"{_gib(self.host_memory)} (resources.memory; {USABLE_FRACTION:.0%} usable)"
                f": {'fits' if host_fits else 'does NOT fit'}"
            )
        if self.gradient_bytes:
            lines.append(
                "  (peak = weights + optimizer state + the larger of gradients and"
                " activations + max(logits, one layer's backward))"
            )
        if self.gpu_hours is not None:
            lines.append(
                f"  GPU-hours: ~{self.gpu_hours:,.1f} for {self.tokens:,} tokens ({self.throughput_assumption})"
            )
        elif self.tokens is None:
            lines.append("  GPU-hours: unknown (no token count: name a local dataset or set hyperparameters.maxSteps)")
        if self.recommended_sharding != self.layout.sharding:
            lines.append(f"  recommended sharding: {self.recommended_sharding}")
        if self.suggestion:
            lines.append(f"  a layout that fits: {self.suggestion}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def to_status(self) -> dict[str, Any]:
        """A small camelCase summary for status.memoryPlan or an Event."""
        return {
            "peakBytesPerDevice": self.peak_bytes,
            "deviceMemoryBytes": self.device_memory,
            "fits": self.fits,
            "sharding": self.layout.sharding,
            "recommendedSharding": self.recommended_sharding,
            "gpuHours": round(self.gpu_hours, 2) if self.gpu_hours is not None else None,
            "summary": self.summary(),
            **({"suggestion": self.suggestion} if self.suggestion else {}),
        }


def _gib(n: int | float) -> str:
    return f"{n / GiB:,.1f} GiB"


def parse_quantity(q: str | int) -> int:
    """A Kubernetes memory quantity (64Gi, 500M, 1e9) in bytes."""
    m = re.fullmatch(r"\s*([0-9.eE+-]+)\s*([KMGTPE]i?|[kmgtpe])?\s*", str(q))
    if not m:
        raise ValueError(f"not a quantity: {q!r}")
    number, suffix = float(m.group(1)), m.group(2) or ""
    powers = {"k": 1, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6}
    if not suffix:
        return int(number)
    base = 1024 if suffix.endswith("i") else 1000
    return int(number * base ** powers[suffix[0]])


def _gpu_product(spec: FineTuneJobSpec) -> tuple[str, float, float] | None:
    for key, value in spec.resources.node_selector.items():
        if "gpu" in key and "product" in key:
            for fragment, gib, tflops in GPU_PRODUCTS:
                if fragment.lower() in value.lower():
                    return value, gib, tflops
            m = re.search(r"(\d+)\s*GB", value, re.IGNORECASE)
            if m:
                return value, float(m.group(1)), DEFAULT_PEAK_TFLOPS
    return None


def requested_sharding(spec: FineTuneJobSpec) -> tuple[str, bool]:
    """(auto | none | fsdp, CPU offload) from the spec.

    `resources.sharding` ({strategy, cpuOffload}) is read with getattr defaults: written beside this module, a
    spec without it is plain data parallel ("none"). A plain string is understood too.
    """
    res = spec.resources
    value: Any = getattr(res, "sharding", None)
    if value is None:
        value = getattr(spec, "sharding", None)
    offload = bool(getattr(res, "cpu_offload", False) or getattr(res, "offload", False))
    if value is None:
        return "none", offload
    if not isinstance(value, str):
        offload = offload or bool(getattr(value, "cpu_offload", False) or getattr(value, "offload", False))
        value = getattr(value, "mode", None) or getattr(value, "strategy", None) or getattr(value, "type", "none")
    return str(value), offload


def _requested_checkpointing(spec: FineTuneJobSpec) -> str:
    hp = spec.hyperparameters
    value = getattr(hp, "gradient_checkpointing", "auto")
    act = getattr(spec.resources, "activation_checkpointing", None)
    return str(act) if isinstance(act, str) and act in ("on", "off") else str(value)


@dataclass(frozen=True)
class _Context:
    shape: ModelShape
    gpu: bool
    world: int
    seq: int
    r: int
    target_modules: str
    device_memory: int
    memory_source: str
    overhead: int
    gpus_per_node: int = 1
    host_memory: int = 0  # resources.memory: where CPU offload keeps the sharded state


def _estimate(ctx: _Context, lay: Layout) -> dict[str, int]:
    """The bytes one device holds at the peak, by kind, for one layout."""
    s = ctx.shape
    p = s.parameters
    n = ctx.world if lay.sharding == "fsdp" else 1
    act_d = 2 if ctx.gpu else 4  # bf16 autocast on a GPU, fp32 on CPU
    out: dict[str, int] = dict.fromkeys(("parameter", "gradient", "optimizer", "adapter", "quantized"), 0)
    if lay.adapter == "none":
        out["parameter"] = 4 * p // n
        out["gradient"] = 4 * p // n
        out["optimizer"] = 8 * p // n
        weight_shard = out["parameter"]
        if ctx.gpu:  # bf16 weight copies: autocast's cache of the whole model, or FSDP's 2 unsharded layers
            out["parameter"] += 2 * p if n == 1 else 2 * 2 * s.layer_params * 2
    else:
        lora = s.lora_params(ctx.r, ctx.target_modules)
        out["adapter"] = 16 * lora // n
        if lay.adapter == "qlora":
            out["quantized"] = math.ceil(s.linear_params * QLORA_BITS_PER_PARAM / 8) // n
            out["parameter"] = 4 * (p - s.linear_params) // n  # upcast to fp32 by prepare_model_for_kbit_training
        else:
            out["parameter"] = (2 if ctx.gpu else 4) * p // n
        weight_shard = out["parameter"]
        if n > 1:  # the unsharded layer being computed and the prefetched one
            out["parameter"] += 2 * s.layer_params * act_d
    out["offloaded"] = 0
    if lay.offload and lay.sharding == "fsdp":
        if ctx.gpu:  # the weight shard (fp32, or the frozen base), its gradients and Adam's state: host memory
            out["offloaded"] = weight_shard + out["gradient"] + out["optimizer"]
        for key in ("gradient", "optimizer"):
            out[key] = 0
        out["parameter"] = 2 * 2 * s.layer_params * act_d
    tokens = lay.batch * ctx.seq
    per_layer = s.activation_elements_per_token() * tokens * act_d
    out["act_full"] = s.layers * per_layer
    out["act_ckpt"] = s.layers * tokens * s.hidden * act_d
    out["recompute"] = per_layer
    out["backward_tmp"] = (2 * (s.expert_intermediate or s.intermediate) + 2 * s.hidden) * tokens * act_d
    out["logits"] = tokens * s.vocab * (act_d + (4 if act_d != 4 else 0) + 4 + 4)
    return out


def _peak(parts: dict[str, int], lay: Layout, overhead: int) -> int:
    """As MemoryPlan.peak_bytes."""
    act = parts["act_ckpt"] if lay.checkpointing else parts["act_full"]
    layer = parts["backward_tmp"] + (parts["recompute"] if lay.checkpointing else 0)
    resident = sum(parts[k] for k in ("parameter", "optimizer", "adapter", "quantized")) + overhead
    return resident + max(act + max(parts["logits"], layer), parts["gradient"])


def _host_fits(ctx: _Context, parts: dict[str, int]) -> bool:
    """CPU offload: every GPU of a node keeps its shard in the pod's memory (resources.memory)."""
    return parts["offloaded"] * ctx.gpus_per_node <= USABLE_FRACTION * ctx.host_memory


def _fits(ctx: _Context, lay: Layout) -> bool:
    parts = _estimate(ctx, lay)
    return _peak(parts, lay, ctx.overhead) <= USABLE_FRACTION * ctx.device_memory and _host_fits(ctx, parts)


def _describe(lay: Layout, base: Layout, ctx: _Context) -> str:
    changes = []
    if lay.adapter != base.adapter:
        changes.append(f"adapter.type: {lay.adapter}")
    if lay.sharding != base.sharding:
        changes.append(f"resources.sharding: {lay.sharding}")
    if lay.offload != base.offload:
        changes.append("CPU offload on")
    if lay.checkpointing != base.checkpointing:
        changes.append(f"hyperparameters.gradientCheckpointing: {'on' if lay.checkpointing else 'off'}")
    if lay.batch != base.batch:
        changes.append(f"hyperparameters.batchSize: {lay.batch} (raise gradientAccumulationSteps to keep the batch)")
    peak = _peak(_estimate(ctx, lay), lay, ctx.overhead)
    return f"{', '.join(changes)} -> {_gib(peak)} per device"


def _find_layout(ctx: _Context, base: Layout) -> Layout | None:
    """The first layout that fits, changing as little as possible: checkpointing, sharding, batch, adapter."""
    wider: list[Sharding] = ["fsdp"] if ctx.world > 1 and base.sharding != "fsdp" else []
    shardings = [base.sharding, *wider]
    adapters = [base.adapter] + [a for a in ("lora", "qlora") if a != base.adapter and (a != "qlora" or ctx.gpu)]
    if base.adapter == "qlora":
        adapters = ["qlora"]
    batches = sorted({base.batch, *[b for b in (8, 4, 2, 1) if b < base.batch]}, reverse=True)
    for adapter in adapters:
        for sharding in shardings:
            for ckpt in sorted({base.checkpointing, True}, reverse=True):  # checkpointing before batch
                for batch in batches:
                    lay = replace(base, adapter=adapter, sharding=sharding, checkpointing=ckpt, batch=batch)
                    if _fits(ctx, lay):
                        return lay
    if ctx.world > 1 and ctx.gpu:
        lay = replace(base, sharding="fsdp", checkpointing=True, batch=1, offload=True)
        if _fits(ctx, lay):
            return lay
    return None


def plan(  # noqa: PLR0915 - a formula sheet: one statement per term of the plan, in the docstring's order
    spec: FineTuneJobSpec,
    model_config: dict[str, Any],
    *,
    train_tokens: int | None = None,
    gpu_memory_gib: float | None = None,
    gpu_memory_bytes: int | None = None,
    model: str | None = None,
    mfu: float = DEFAULT_MFU,
) -> MemoryPlan:
    """The memory plan of `spec` for the base model described by `model_config` (a parsed config.json).

    `train_tokens`: tokens in the training data (validate counts them) for the GPU-hours; `gpu_memory_gib`:
    the device memory (default: from the nvidia.com/gpu.product node selector, else 80 GiB); `gpu_memory_bytes`:
    the same in bytes (the trainer passes the GPU's own total).
    """
    if gpu_memory_bytes is not None:
        gpu_memory_gib = gpu_memory_bytes / GiB
    shape = ModelShape.from_config(model_config)
    res = spec.resources
    gpu = res.gpus > 0
    world = max(1, res.gpus) * res.nodes
    notes: list[str] = []
    product = _gpu_product(spec) if gpu else None
    peak_tflops = product[2] if product else DEFAULT_PEAK_TFLOPS
    if not gpu:
        device_memory, source = parse_quantity(res.memory), f"resources.memory {res.memory}"
    elif gpu_memory_gib is not None:
        device_memory, source = int(gpu_memory_gib * GiB), "as given"
    elif product:
        device_memory, source = int(product[1] * GiB), f"nodeSelector {product[0]}"
    else:
        device_memory, source = int(DEFAULT_GPU_MEMORY_GIB * GiB), "assumed: no GPU product in nodeSelector"
    ctx = _Context(
        shape=shape,
        gpu=gpu,
        world=world,
        seq=spec.hyperparameters.max_seq_length,
        r=spec.adapter.r,
        target_modules=spec.adapter.target_modules,
        device_memory=device_memory,
        memory_source=source,
        overhead=CUDA_OVERHEAD_BYTES if gpu else 0,
        gpus_per_node=max(1, res.gpus),
        host_memory=parse_quantity(res.memory),
    )

    asked, offload = requested_sharding(spec)
    if getattr(spec.resources, "sharding", None) is None and getattr(spec, "sharding", None) is None:
        notes.append("the spec has no resources.sharding field yet: planned as plain data parallel (none)")
    adapter = spec.adapter.type
    if spec.method == "distillation" and spec.distillation and spec.distillation.teacher.uri:
        notes.append("a local distillation teacher is loaded beside the student: not counted here")
    if spec.method in ("dpo", "rft"):
        notes.append(f"{spec.method}: the reference model (full fine-tuning) and generations are not counted")
    ckpt_setting = _requested_checkpointing(spec)
    static = _estimate(ctx, Layout(adapter, "none", False, spec.hyperparameters.batch_size))
    state = sum(static[k] for k in ("parameter", "gradient", "optimizer", "adapter", "quantized"))
    # the trainer's `auto`: on when weights + gradients + optimizer state fill over 40 % of the GPU
    ckpt = ckpt_setting == "on" or (ckpt_setting == "auto" and gpu and state > 0.4 * device_memory)

    batch = spec.hyperparameters.batch_size
    unsharded = Layout(adapter, "none", ckpt, batch)
    sharded = Layout(adapter, "fsdp", ckpt, batch, offload)
    fits_alone = _fits(ctx, unsharded)
    recommended: Sharding = "none" if fits_alone or world == 1 or not _fits(ctx, sharded) else "fsdp"
    if asked == "fsdp" and world > 1:
        layout = sharded
    elif asked == "auto":
        layout = sharded if recommended == "fsdp" else unsharded
    else:
        layout = unsharded
        if asked == "fsdp":
            notes.append("resources.sharding fsdp on one device shards nothing")
    parts = _estimate(ctx, layout)
    host_offload = parts["offloaded"] * ctx.gpus_per_node
    fits = _peak(parts, layout, ctx.overhead) <= USABLE_FRACTION * device_memory and _host_fits(ctx, parts)
    if host_offload and not _host_fits(ctx, parts):
        notes.append(
            f"CPU offload keeps {_gib(host_offload)} of sharded weights, gradients and Adam state per node"
            f" ({ctx.gpus_per_node} GPU(s) x {_gib(parts['offloaded'])}); resources.memory {res.memory} is"
            f" {_gib(ctx.host_memory)} ({USABLE_FRACTION:.0%} usable): raise resources.memory or use more nodes"
        )
    suggestion = None
    if not fits:
        found = _find_layout(ctx, layout)
        suggestion = (
            _describe(found, layout, ctx)
            if found
            else "none found with these GPUs: ask for more GPUs (resources.gpus, resources.nodes) or a smaller model"
        )

    trainable = (
        shape.parameters if adapter == "none" else shape.lora_params(spec.adapter.r, spec.adapter.target_modules)
    )
    tokens = _total_tokens(spec, train_tokens, world)
    gpu_hours = None
    assumption = f"{mfu:.0%} MFU of {peak_tflops:,.0f} TFLOP/s dense bf16"
    if tokens is not None and gpu:
        per_token = (6 if adapter == "none" else 4) * shape.parameters + 12 * shape.layers * shape.hidden * ctx.seq
        if layout.checkpointing:
            per_token += 2 * shape.parameters
        gpu_hours = per_token * tokens / (peak_tflops * 1e12 * mfu) / 3600
        if adapter == "qlora":
            notes.append("QLoRA dequantises the base weights every step: expect more GPU-hours than this")
    return MemoryPlan(
        model=model or "base model",
        parameters=shape.parameters,
        trainable=trainable,
        device="gpu" if gpu else "cpu",
        world_size=world,
        layout=layout,
        requested_sharding=asked,
        parameter_bytes=parts["parameter"],
        gradient_bytes=parts["gradient"],
        optimizer_bytes=parts["optimizer"],
        adapter_bytes=parts["adapter"],
        quantized_bytes=parts["quantized"],
        activations_no_checkpointing=parts["act_full"],
        activations_checkpointing=parts["act_ckpt"],
        logits_bytes=parts["logits"],
        recompute_bytes=parts["recompute"],
        backward_temporaries_bytes=parts["backward_tmp"],
        overhead_bytes=ctx.overhead,
        device_memory=device_memory,
        device_memory_source=source,
        fits=fits,
        recommended_sharding=recommended,
        tokens=tokens,
        gpu_hours=gpu_hours,
        throughput_assumption=assumption,
        suggestion=suggestion,
        notes=tuple(notes),
        host_offload_bytes=host_offload,
        host_memory=ctx.host_memory,
    )


def _total_tokens(spec: FineTuneJobSpec, train_tokens: int | None, world: int) -> int | None:
    """Tokens trained on: the data's tokens x epochs, or at most maxSteps x global batch x sequence length."""
    hp = spec.hyperparameters
    by_steps = (
        hp.max_steps * hp.batch_size * hp.gradient_accumulation_steps * world * hp.max_seq_length
        if hp.max_steps
        else None
    )
    by_data = int(train_tokens * hp.epochs) if train_tokens is not None else None
    if by_steps is not None and by_data is not None:
        return min(by_steps, by_data)
    return by_data if by_data is not None else by_steps
