"""Changes to users made outside the tenants services still reach the API key cache.

A user deactivated or deleted (in the admin's user pages, by ``manage.py
shell``, by another app) must lose API access at once, in every process, as a
revoked key does: cached keys carry the user as read when they were cached.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models.signals import post_delete, post_save

from tenants import key_cache


def _user_saved(
    sender: Any, instance: Any, created: bool = False, update_fields: Any = None, **kwargs: Any
) -> None:
    # A login saves ``last_login`` only: that must not flush every process's cache. A new
    # user has no keys yet; an inactive user's key is never cached, so reactivation needs
    # nothing either.
    if created or instance.is_active:
        return
    if update_fields is not None and "is_active" not in update_fields:
        return
    key_cache.invalidate_everywhere()


def _user_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    key_cache.invalidate_everywhere()


def connect() -> None:
    """Connect the receivers to the user model (``TenantsConfig.ready``)."""
    user_model = get_user_model()
    post_save.connect(_user_saved, sender=user_model, dispatch_uid="tenants.user_saved")
    post_delete.connect(_user_deleted, sender=user_model, dispatch_uid="tenants.user_deleted")
