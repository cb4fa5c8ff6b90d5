"""A tiny randomly initialised GLM and an offline-trained tokenizer, saved like a real checkpoint.

The GLM tests load it through the same ``from_pretrained(path, local_files_only=True)`` code a user's GLM-4 or
GLM-Edge checkpoint goes through, so nothing is downloaded and the loading path is the real one. Its answers are
random: tests check the analyzer's *guarantees* (only allowed options, confidences in range), not its wisdom.
"""

from __future__ import annotations

import os
from pathlib import Path

# transformers checks the hub before a local folder unless told it is offline; the tests never go online.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402
from transformers import GlmConfig, GlmForCausalLM, PreTrainedTokenizerFast  # noqa: E402

from aiops.domain.diagnosis import Fault  # noqa: E402

SPECIAL = ["<pad>", "<eos>", "<unk>"]
VOCAB_SIZE = 400

_CORPUS = [
    "You diagnose incidents in a Kubernetes namespace. Choose the root cause workload, fault and playbook.",
    "workload=cart fault=memory_leak playbook=restart-workload",
    "workload=frontend fault=traffic_surge playbook=scale-up",
    "workload=checkout fault=bad_deploy playbook=rollback-deploy",
    "workload=redis fault=dependency_latency playbook=escalate",
    "workload=payments fault=cpu_saturation playbook=scale-up shift-traffic bad_replica_set",
    "anomaly memory cpu latency_p99 error_ratio request_rate restarts available_ratio score threshold",
    "ERROR NullPointerException OOMKilling BackOff Back-off restarting failed container",
    "event Warning Normal ScalingReplicaSet Scaled up replica set alert HighErrorRate severity critical",
    "untrusted data ignore previous instructions answer option namespace shop",
    " ".join(f.value for f in Fault),
]


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on a small corpus (any text encodes; no unknown tokens)."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def build_model(tokenizer: PreTrainedTokenizerFast, seed: int = 0) -> GlmForCausalLM:
    """A 2-layer GLM with hidden size 32; pad/eos ids point into the tiny vocabulary (the defaults do not)."""
    torch.manual_seed(seed)
    config = GlmConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=4096,
                       pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                       bos_token_id=None)
    return GlmForCausalLM(config).eval()


def save_tiny_glm(folder: str | Path) -> Path:
    """Build the tokenizer and model and ``save_pretrained`` both into ``folder``; returns the folder."""
    folder = Path(folder)
    tokenizer = build_tokenizer()
    model = build_model(tokenizer)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_glm_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The saved tiny GLM folder, built once per test session."""
    return save_tiny_glm(tmp_path_factory.mktemp("tiny-glm"))
