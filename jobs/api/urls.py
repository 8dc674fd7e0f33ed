"""Routes of /api/v1/ (included from toolboxai.urls under the ``api`` namespace)."""

from __future__ import annotations

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from jobs.api import compat, dead_letters, events, operations, root, views

app_name = "api"

urlpatterns = [
    path("", root.APIRootView.as_view(), name="root"),
    path("job-types/", views.JobTypeListView.as_view(), name="job-type-list"),
    path("jobs/", views.JobListCreateView.as_view(), name="job-list"),
    path("jobs/batch/", views.JobBatchView.as_view(), name="job-batch"),
    path("jobs/<str:job_id>/", views.JobDetailView.as_view(), name="job-detail"),
    path("jobs/<str:job_id>/cancel/", views.JobCancelView.as_view(), name="job-cancel"),
    path("jobs/<str:job_id>/retry/", views.JobRetryView.as_view(), name="job-retry"),
    path("jobs/<str:job_id>/events/", events.job_events, name="job-events"),
    path("dead-letters/", dead_letters.DeadLetterGroupListView.as_view(), name="dead-letter-list"),
    path(
        "dead-letters/<str:group_id>/",
        dead_letters.DeadLetterGroupDetailView.as_view(),
        name="dead-letter-group",
    ),
    path(
        "dead-letters/<str:group_id>/replay/",
        dead_letters.DeadLetterReplayView.as_view(),
        name="dead-letter-replay",
    ),
    path(
        "dead-letters/<str:group_id>/purge/",
        dead_letters.DeadLetterPurgeView.as_view(),
        name="dead-letter-purge",
    ),
    path("queues/", operations.QueueListView.as_view(), name="queue-list"),
    path("workers/", operations.WorkerListView.as_view(), name="worker-list"),
    path("tasks/submit", compat.TaskSubmitView.as_view(), name="task-submit"),
    path("tasks/status/<str:task_id>", compat.TaskStatusView.as_view(), name="task-status"),
    path("tasks/submit/", compat.TaskSubmitSlashView.as_view(), name="task-submit-slash"),
    path(
        "tasks/status/<str:task_id>/",
        compat.TaskStatusSlashView.as_view(),
        name="task-status-slash",
    ),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # With the response's CSP nonce on its inline style and script (see SECURE_CSP).
    path(
        "docs/",
        SpectacularSwaggerView.as_view(url_name="api:schema", template_name="api/swagger_ui.html"),
        name="docs",
    ),
]
