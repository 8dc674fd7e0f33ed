"""The query parameters an admin changelist accepts as lookups: its declared filters only.

Django's ``ModelAdmin.lookup_allowed`` accepts any lookup on the model's own
fields, JSON paths included, so ``?payload__kwargs__password__startswith=h``
would tell, by the rows it leaves, a value the admin shows redacted, one
character at a time. :func:`declared_lookups` lists what the changelist's own
links use: the ``list_filter`` parameters and the date drill-down. Search
(``q``), ordering (``o``) and paging (``p``, ``all``) never reach
``lookup_allowed``. A refused lookup answers 400 (Django's
``DisallowedModelAdminLookup``) without running the query.
"""

from __future__ import annotations

from typing import Any

from django.contrib.admin import FieldListFilter, ListFilter, ModelAdmin, SimpleListFilter
from django.contrib.admin.utils import get_fields_from_path
from django.db.models import Field
from django.http import HttpRequest

#: The date hierarchy's drill-down parameters (``django.contrib.admin.views.main``).
_DATE_HIERARCHY_PARTS = ("year", "month", "day")


def declared_lookups(model_admin: ModelAdmin[Any], request: HttpRequest) -> frozenset[str]:
    """Every query parameter the admin's declared filters and date hierarchy read."""
    names: set[str] = set()
    if model_admin.date_hierarchy:
        names.update(f"{model_admin.date_hierarchy}__{part}" for part in _DATE_HIERARCHY_PARTS)
    for item in model_admin.get_list_filter(request):
        if isinstance(item, type) and issubclass(item, SimpleListFilter):
            # Its parameter, without building it (lookups() may query).
            names.add(str(item.parameter_name))
            continue
        if isinstance(item, type) and issubclass(item, ListFilter):
            custom = item(request, {}, model_admin.model, model_admin)
            names.update(str(name) for name in custom.expected_parameters() or () if name)
            continue
        # As ChangeList.get_filters reads them: a field (or its path), optionally
        # with its FieldListFilter class.
        target: Any
        filter_class: Any
        target, filter_class = item if isinstance(item, list | tuple) else (item, None)
        field, field_path = target, None
        if not isinstance(target, Field):
            field_path = str(target)
            field = get_fields_from_path(model_admin.model, field_path)[-1]
        # Built without parameters, a field filter names what it reads. (A related
        # field's filter also reads its choices: one query.)
        make_filter: Any = filter_class or FieldListFilter.create
        spec: ListFilter = make_filter(
            field, request, {}, model_admin.model, model_admin, field_path=field_path
        )
        names.update(str(name) for name in spec.expected_parameters() or () if name)
    return frozenset(names)
