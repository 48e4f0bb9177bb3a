"""Domain errors of yoloserve: what went wrong, in the project's own words, with no HTTP in it.

Every error carries a stable snake_case ``code`` that clients may branch on; the message is for a
human and may change. Services translate these errors at their edge, in one place (the gateway
does it in ``gateway/errors.py``); nothing in this module knows about status codes.

Hierarchy::

    YoloServeError                       code
    ├── InputError                       invalid_input
    │   ├── InvalidParameter             invalid_parameter
    │   │   ├── InvalidIdempotencyKey    invalid_idempotency_key
    │   │   └── UnsupportedExportFormat  unsupported_export_format
    │   ├── DatasetInvalid               dataset_invalid    (carries the whole report)
    │   ├── InvalidLabels                invalid_labels
    │   │   └── UnknownClass             unknown_class
    │   ├── InvalidTask                  invalid_task       (a Label Studio task or event)
    │   ├── InvalidImage                 invalid_image
    │   │   └── UnsupportedImageFormat   unsupported_image_format
    │   └── PayloadTooLarge              payload_too_large
    │       └── ImageTooLarge            image_too_large
    ├── AuthError                        auth_error
    │   ├── Unauthorized                 unauthorized       (no credentials)
    │   └── Forbidden                    forbidden          (credentials refused)
    ├── NotFound                         not_found
    │   ├── UnknownVersion               unknown_version
    │   ├── UnknownJob                   unknown_job
    │   ├── UnknownReviewItem            unknown_review_item
    │   ├── UnknownDataset               unknown_dataset
    │   └── NoLabelsCollected            no_labels_collected
    ├── Conflict                         conflict
    │   ├── RetrainAlreadyRunning        retrain_already_running
    │   ├── VersionAlreadyRegistered     version_already_registered
    │   ├── VersionRejected              version_rejected
    │   ├── VersionClassesDiffer         version_classes_differ
    │   ├── SwapInProgress               swap_in_progress
    │   ├── IdempotencyKeyReused         idempotency_key_reused
    │   ├── ReviewItemClosed             review_item_closed
    │   ├── DatasetExists                dataset_exists
    │   └── CsvSchemaError               csv_schema_mismatch
    ├── ModelServerError                 model_server_error
    │   ├── ModelServerUnavailable       model_server_unavailable
    │   │   └── ModelNotReady            model_not_ready
    │   ├── ModelServerTimeout           model_server_timeout
    │   └── ModelServerBadResponse       model_server_bad_response
    ├── KubernetesError                  kubernetes_error
    ├── TaskImageUnavailable             task_image_unavailable
    ├── EmbeddingsUnavailable            embeddings_unavailable
    └── RegistryError                    registry_error

Example:
    >>> try:
    ...     raise UnknownVersion("model version '7' is not registered")
    ... except NotFound as exc:
    ...     (exc.code, str(exc))
    ('unknown_version', "model version '7' is not registered")
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar


class YoloServeError(Exception):
    """Base class of every domain error.

    Attributes:
        code: Stable snake_case identifier of the error kind (a class attribute).
        message: Human-readable explanation of this occurrence.
    """

    code: ClassVar[str] = "yoloserve_error"
    default_message: ClassVar[str] = "yoloserve error"

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


# --- the caller sent something we cannot use -------------------------------------------------


class InputError(YoloServeError):
    """The request's content is not acceptable."""

    code = "invalid_input"
    default_message = "invalid input"


class InvalidParameter(InputError):
    """A parameter has a value out of range or of the wrong kind."""

    code = "invalid_parameter"
    default_message = "invalid parameter"


class InvalidIdempotencyKey(InvalidParameter):
    """An ``Idempotency-Key`` that is empty, too long or not printable ASCII."""

    code = "invalid_idempotency_key"
    default_message = "invalid idempotency key"


class UnsupportedExportFormat(InvalidParameter):
    """A dataset export was asked for in a format there is no writer for."""

    code = "unsupported_export_format"
    default_message = "unsupported export format"


class DatasetInvalid(InputError):
    """A labelled dataset failed validation; ``problems`` lists every problem found, not the
    first one only (``yoloserve.datasets.validate.Problem``)."""

    code = "dataset_invalid"
    default_message = "the dataset is not valid"

    def __init__(
        self, message: str | None = None, problems: Sequence[object] | None = None
    ) -> None:
        super().__init__(message)
        self.problems = list(problems or [])


class InvalidLabels(InputError):
    """Feedback labels are well-formed but refer to unknown classes or impossible boxes."""

    code = "invalid_labels"
    default_message = "invalid labels"


class UnknownClass(InvalidLabels):
    """A ground-truth box names a class the model does not have."""

    code = "unknown_class"
    default_message = "unknown class name"


class InvalidTask(InputError):
    """A Label Studio request the ML backend cannot use: no image field, an image URL it may not
    fetch, a labeling config without boxes, an annotation that is not boxes."""

    code = "invalid_task"
    default_message = "invalid Label Studio task"


class InvalidImage(InputError):
    """The upload cannot be decoded as an image."""

    code = "invalid_image"
    default_message = "the upload is not a decodable image"


class UnsupportedImageFormat(InvalidImage):
    """The upload is an image, but not one of the supported formats (JPEG, PNG, WebP, BMP)."""

    code = "unsupported_image_format"
    default_message = "supported image formats are JPEG, PNG, WebP and BMP"


class PayloadTooLarge(InputError):
    """The request body is larger than the configured limit."""

    code = "payload_too_large"
    default_message = "the request body is too large"


class ImageTooLarge(PayloadTooLarge):
    """The image is larger than allowed, in bytes or in pixels."""

    code = "image_too_large"
    default_message = "the image is too large"


# --- who is asking --------------------------------------------------------------------------


class AuthError(YoloServeError):
    """The caller may not do this."""

    code = "auth_error"
    default_message = "not allowed"


class Unauthorized(AuthError):
    """No credentials were presented where they are required."""

    code = "unauthorized"
    default_message = "an API key is required (header X-API-Key)"


class Forbidden(AuthError):
    """Credentials were presented but are wrong or lack the needed rights."""

    code = "forbidden"
    default_message = "this API key is not allowed here"


# --- the thing asked for does not exist -------------------------------------------------------


class NotFound(YoloServeError):
    """A named resource does not exist."""

    code = "not_found"
    default_message = "not found"


class UnknownVersion(NotFound):
    """No model version by that name is registered."""

    code = "unknown_version"
    default_message = "unknown model version"


class UnknownJob(NotFound):
    """No retrain job by that id exists."""

    code = "unknown_job"
    default_message = "unknown retrain job"


class UnknownReviewItem(NotFound):
    """No review-queue item by that id exists (never sampled, or pruned long ago)."""

    code = "unknown_review_item"
    default_message = "unknown review item"


class UnknownDataset(NotFound):
    """No imported dataset by that name is recorded in the store."""

    code = "unknown_dataset"
    default_message = "unknown dataset"


class NoLabelsCollected(NotFound):
    """An export of collected labels was asked for, but no feedback has been recorded yet."""

    code = "no_labels_collected"
    default_message = "no labelled feedback has been collected yet"


# --- the state of the system forbids it now ---------------------------------------------------


class Conflict(YoloServeError):
    """The request conflicts with the current state."""

    code = "conflict"
    default_message = "conflict with the current state"


class RetrainAlreadyRunning(Conflict):
    """A retrain job is queued or running; only one runs at a time."""

    code = "retrain_already_running"
    default_message = "a retrain job is already running"


class VersionAlreadyRegistered(Conflict):
    """The model server already has this model version."""

    code = "version_already_registered"
    default_message = "this model version is already registered"


class VersionRejected(Conflict):
    """The version failed the retrain gate; it is kept for the record but never served."""

    code = "version_rejected"
    default_message = "this model version was rejected and cannot be served"


class VersionClassesDiffer(Conflict):
    """The version detects other classes than the platform's (they changed since it was made);
    it is kept for the record but cannot serve again."""

    code = "version_classes_differ"
    default_message = "this model version detects other classes than the platform's"


class SwapInProgress(Conflict):
    """Another hot swap of the model is still running; swaps happen one at a time."""

    code = "swap_in_progress"
    default_message = "another model swap is in progress"


class IdempotencyKeyReused(Conflict):
    """An idempotency key sent again with other content than the request that first used it."""

    code = "idempotency_key_reused"
    default_message = "this idempotency key belongs to another request"
class ReviewItemClosed(Conflict):
    """The review item was already labelled, dismissed or evicted: it cannot be closed twice."""

    code = "review_item_closed"
    default_message = "this review item is already closed"


class DatasetExists(Conflict):
    """A dataset of that name is imported already (import again with ``--replace``)."""

    code = "dataset_exists"
    default_message = "a dataset of that name exists"


class CsvSchemaError(Conflict):
    """A stored CSV file does not have the columns this code writes (e.g. another embedder).

    A conflict with the server's state, not bad input: the file is never rewritten to fit.
    """

    code = "csv_schema_mismatch"
    default_message = "the CSV file does not have the expected columns"


# --- the model server (TorchServe) ------------------------------------------------------------


class ModelServerError(YoloServeError):
    """The model server failed to answer as agreed.

    Attributes:
        upstream_status: The model server's own status code, when it answered at all.
        retry_after_s: A hint for when a retry may succeed, when one is known.
    """

    code = "model_server_error"
    default_message = "the model server failed"

    def __init__(
        self,
        message: str | None = None,
        *,
        upstream_status: int | None = None,
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(message)
        self.upstream_status = upstream_status
        self.retry_after_s = retry_after_s


class ModelServerUnavailable(ModelServerError):
    """The model server cannot be reached or has no capacity now; retrying later may work."""

    code = "model_server_unavailable"
    default_message = "the model server is unavailable"


class ModelNotReady(ModelServerUnavailable):
    """The model server answers, but the model is not registered or has no live worker."""

    code = "model_not_ready"
    default_message = "the model has no live worker"


class ModelServerTimeout(ModelServerError):
    """The model server did not answer in time."""

    code = "model_server_timeout"
    default_message = "the model server did not answer in time"


class ModelServerBadResponse(ModelServerError):
    """The model server answered something that breaks the agreed handler format."""

    code = "model_server_bad_response"
    default_message = "the model server answered in an unexpected format"


# --- the cluster (KServe rollouts, retrain Jobs) ----------------------------------------------


class KubernetesError(YoloServeError):
    """The Kubernetes API refused a call or could not be reached (``yoloserve.kube``).

    Attributes:
        status: The API server's status code, when it answered at all.
    """

    code = "kubernetes_error"
    default_message = "the Kubernetes API call failed"

    def __init__(self, message: str | None = None, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class TaskImageUnavailable(YoloServeError):
    """A Label Studio task's image could not be fetched (Label Studio or its host failed)."""

    code = "task_image_unavailable"
    default_message = "the task's image could not be fetched"


# --- local artifacts ------------------------------------------------------------------------


class EmbeddingsUnavailable(YoloServeError):
    """Per-box embeddings were asked for, but no embedder is installed or it failed to load."""

    code = "embeddings_unavailable"
    default_message = "embeddings are not available: build the embedder artifact first"


class RegistryError(YoloServeError):
    """The model registry file is missing parts or cannot be parsed."""

    code = "registry_error"
    default_message = "the model registry cannot be read"
