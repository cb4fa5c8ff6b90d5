"""The registry's current model per namespace, for detection (``lifecycle.detect_with: registry``).

Loaded once per promoted version and kept until another version is promoted (a promote or rollback, by
``aiops models``, ``aiops train`` or the retrain playbook, takes effect at the next loop). A model that cannot be
loaded is logged with the file it names and the loop falls back to fitting on the window: a broken model file must
not leave the workloads unwatched.
"""

from __future__ import annotations

import logging
import threading

from aiops.detect.store import ModelStore
from aiops.detect.workload import WorkloadDetector
from aiops.domain.errors import InputError
from aiops.settings import LifecycleSettings

log = logging.getLogger(__name__)


class CurrentModels:
    """``models(namespace) -> WorkloadDetector | None``: the current version of the namespace's model."""

    def __init__(self, store: ModelStore, settings: LifecycleSettings) -> None:
        self.store = store
        self.settings = settings
        self._cache: dict[str, tuple[int, WorkloadDetector | None]] = {}
        self._lock = threading.Lock()

    def __call__(self, namespace: str) -> WorkloadDetector | None:
        name = self.settings.model_name(namespace)
        try:
            version = self.store.current_version(name) if self.store.versions(name) else 0
        except InputError as exc:
            log.error("model for %s: %s", namespace, exc)
            return None
        if not version:
            return None
        with self._lock:
            cached = self._cache.get(name)
            if cached is not None and cached[0] == version:
                return cached[1]
            try:
                model, _ = self.store.load(name, version=version, expected_class=WorkloadDetector)
            except InputError as exc:
                log.error("cannot use model %s v%d, fitting on the window instead: %s", name, version, exc)
                model = None
            self._cache[name] = (version, model)  # type: ignore[assignment]
            return model  # type: ignore[return-value]
