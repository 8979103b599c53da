"""kmock's KubernetesEmulator plus the API server's optimistic concurrency on updates.

The stock emulator merges every PATCH. A real API server rejects a write whose
``metadata.resourceVersion`` is not the stored one (409 Conflict) and bumps the version on every
accepted write; this subclass does both (kmock's docs suggest subclassing for such field rules), so
the ConfigMap applier's conflict retry is exercised against the behaviour it is written for.
"""

from __future__ import annotations

from typing import Any

from kmock import KubernetesEmulator
from kmock._internal import enums, k8s


class ResourceVersionEmulator(KubernetesEmulator):
    async def _handle(self, request: Any) -> Any:
        if request.resource is not None and request.action == enums.action.UPDATE and request.name:
            key = (request.resource, request.namespace, request.name)
            if key in self.objects and not self.objects[key].deleted:
                stored = self.objects[key].get("metadata", {}).get("resourceVersion")
                sent = ((request.data or {}).get("metadata") or {}).get("resourceVersion")
                if sent is not None and sent != stored:
                    raise k8s.KubernetesObjectConflictError(
                        reason="Conflict",
                        message=f"the object has been modified (resourceVersion {sent} != {stored})")
                response = await super()._handle(request)
                self.bump(key)
                return response
        return await super()._handle(request)

    def bump(self, key: tuple) -> None:
        current = self.objects[key].get("metadata", {}).get("resourceVersion") or "0"
        self.objects[key].patch({"metadata": {"resourceVersion": str(int(current) + 1)}})
