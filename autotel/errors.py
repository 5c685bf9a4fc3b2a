"""The one exception tree of autotel.

Library code raises these; only `autotel.cli` turns one into a line on stderr and
an exit code, which each class carries::

    AutotelError                      exit 1
    ├── ConfigError                   exit 2   bad or missing autotel.yaml, bad flag value
    ├── VerificationError             exit 3   a signature, hash or licence that does not check out
    │   ├── SignatureError            exit 3   bad signature, hash/size mismatch, unlisted or missing entry
    │   └── LicenseError              exit 3
    ├── PackageError                  exit 4   an update package that is unsafe or unusable
    │   └── NotNewerError             exit 4   its version is not newer than the installed one
    ├── JobError                      exit 5   unknown kind or step, bad job file, failed step
    │   └── StepTimeoutError          exit 5
    ├── DatabaseError                 exit 6   PostgreSQL unreachable, migration refused
    ├── StateError                    exit 7   the state directory is busy or inconsistent
    │   └── DiskSpaceError            exit 7   too little free disk space for what must be written
    ├── RequestError                  exit 8   an HTTP request the agent or portal cannot use (400)
    │   ├── BodyTooLargeError         exit 8   its body is over the limit (413)
    │   └── IncompleteBodyError       exit 8   its body ended before its declared length (400)
    │       └── BodyTimeoutError      exit 8   the client stopped sending it (408)
    └── TransportError                exit 10  the admin's session with an agent failed
        ├── UnreachableError          exit 11
        ├── CertificateChangedError   exit 12
        ├── AuthRefusedError          exit 13
        └── TransferError             exit 14

A `RequestError` also carries the HTTP status the agent and portal answer with;
the client's fault, so they log it as a warning, never with a traceback.

Messages say what was expected, what was found and what to do, because the reader
is a plant admin with no debugger.
"""

from __future__ import annotations


class AutotelError(Exception):
    """Base of every error autotel reports to a person."""

    exit_code = 1


class ConfigError(AutotelError):
    exit_code = 2


class VerificationError(AutotelError):
    exit_code = 3


class SignatureError(VerificationError):
    exit_code = 3


class LicenseError(VerificationError):
    exit_code = 3


class PackageError(AutotelError):
    exit_code = 4


class NotNewerError(PackageError):
    exit_code = 4


class JobError(AutotelError):
    exit_code = 5


class StepTimeoutError(JobError):
    exit_code = 5


class DatabaseError(AutotelError):
    exit_code = 6


class StateError(AutotelError):
    exit_code = 7


class DiskSpaceError(StateError):
    exit_code = 7


class RequestError(AutotelError):
    exit_code = 8
    http_status = 400


class BodyTooLargeError(RequestError):
    http_status = 413


class IncompleteBodyError(RequestError):
    http_status = 400


class BodyTimeoutError(IncompleteBodyError):
    http_status = 408


class TransportError(AutotelError):
    exit_code = 10


class UnreachableError(TransportError):
    exit_code = 11


class CertificateChangedError(TransportError):
    exit_code = 12


class AuthRefusedError(TransportError):
    exit_code = 13


class TransferError(TransportError):
    exit_code = 14
