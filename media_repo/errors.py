"""Media-specific members of the MatrixError family (homeserver/errors.py).

Spec: https://spec.matrix.org/v1.19/client-server-api/#content-repository
"""

from __future__ import annotations

from homeserver.errors import MatrixError


class CannotOverwriteMedia(MatrixError):
    """PUT /upload/{serverName}/{mediaId} for media whose body already arrived."""

    errcode = "M_CANNOT_OVERWRITE_MEDIA"
    status = 409


class NotYetUploaded(MatrixError):
    """Download of an async upload whose body has not arrived (we do not wait for it)."""

    errcode = "M_NOT_YET_UPLOADED"
    status = 504


class PreviewForbidden(MatrixError):
    """A preview URL (or a redirect or image on the way) names a scheme or address this
    server does not fetch: private, loopback, link-local and the like."""

    errcode = "M_FORBIDDEN"
    status = 403


class PreviewFetchFailed(MatrixError):
    """The previewed URL could not be fetched: unreachable, an error status, too large or
    too slow. 502, as Synapse answers: the failure is upstream, not the client's."""

    errcode = "M_UNKNOWN"
    status = 502
