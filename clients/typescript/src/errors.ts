// PersonaError: every failed call of the SDK, read from the google.rpc.Status the server sends.

import { Code, ConnectError } from "@connectrpc/connect";
import {
  BadRequestSchema,
  ErrorInfoSchema,
  RetryInfoSchema,
} from "./gen/google/rpc/error_details_pb.js";

/** One invalid field of a request; `field` is a proto path such as `items[3].occurred_at`. */
export interface FieldViolation {
  readonly field: string;
  readonly description: string;
}

/** A detail of the status as sent, including kinds this SDK does not read. */
export interface RawDetail {
  readonly type: string;
  readonly value: Uint8Array;
}

/**
 * A failed Persona call: the gRPC code, `ErrorInfo` (`reason`, `domain`, `metadata`, always
 * present for the server's own errors), `BadRequest` field violations (INVALID_ARGUMENT) and
 * `RetryInfo` (when a retry may succeed). Without an ErrorInfo (a transport failure such as no
 * server listening) `reason` is the code's name, as in the Python and Go SDKs. The
 * ConnectError it was read from is the `cause`.
 */
export class PersonaError extends Error {
  override readonly name = "PersonaError";
  /** The status code (`Code.InvalidArgument`, ...). */
  readonly code: Code;
  /** The code's canonical name, as every Persona SDK spells it: "INVALID_ARGUMENT". */
  readonly codeName: string;
  /** The server's message, without the code prefix of `message`. */
  readonly rawMessage: string;
  readonly reason: string;
  readonly domain: string;
  readonly metadata: Readonly<Record<string, string>>;
  readonly fieldViolations: readonly FieldViolation[];
  /** The server's RetryInfo.retry_delay in milliseconds, or undefined when it sent none. */
  readonly retryDelayMs: number | undefined;
  readonly details: readonly RawDetail[];

  constructor(cause: ConnectError) {
    const codeName = codeNameOf(cause.code);
    super(`${codeName}: ${cause.rawMessage}`, { cause });
    this.code = cause.code;
    this.codeName = codeName;
    this.rawMessage = cause.rawMessage;
    const info = cause.findDetails(ErrorInfoSchema)[0];
    this.reason = info?.reason || codeName;
    this.domain = info?.domain ?? "";
    this.metadata = { ...(info?.metadata ?? {}) };
    this.fieldViolations = cause
      .findDetails(BadRequestSchema)
      .flatMap((bad) =>
        bad.fieldViolations.map((v) => ({ field: v.field, description: v.description })),
      );
    const retry = cause.findDetails(RetryInfoSchema)[0]?.retryDelay;
    this.retryDelayMs =
      retry === undefined ? undefined : Number(retry.seconds) * 1000 + retry.nanos / 1e6;
    this.details = cause.details.flatMap((d) => ("type" in d ? [{ type: d.type, value: d.value }] : []));
  }

  /** The violation of one field, if the server reported one. */
  violation(field: string): FieldViolation | undefined {
    return this.fieldViolations.find((v) => v.field === field);
  }
}

/** Any error of a call as a PersonaError; an abort by the caller's own signal stays as it is. */
export function toPersonaError(err: unknown): unknown {
  if (err instanceof PersonaError) {
    return err;
  }
  if (err instanceof ConnectError) {
    return new PersonaError(err);
  }
  return err;
}

const CODE_NAMES: Readonly<Record<number, string>> = {
  [Code.Canceled]: "CANCELLED",
  [Code.Unknown]: "UNKNOWN",
  [Code.InvalidArgument]: "INVALID_ARGUMENT",
  [Code.DeadlineExceeded]: "DEADLINE_EXCEEDED",
  [Code.NotFound]: "NOT_FOUND",
  [Code.AlreadyExists]: "ALREADY_EXISTS",
  [Code.PermissionDenied]: "PERMISSION_DENIED",
  [Code.ResourceExhausted]: "RESOURCE_EXHAUSTED",
  [Code.FailedPrecondition]: "FAILED_PRECONDITION",
  [Code.Aborted]: "ABORTED",
  [Code.OutOfRange]: "OUT_OF_RANGE",
  [Code.Unimplemented]: "UNIMPLEMENTED",
  [Code.Internal]: "INTERNAL",
  [Code.Unavailable]: "UNAVAILABLE",
  [Code.DataLoss]: "DATA_LOSS",
  [Code.Unauthenticated]: "UNAUTHENTICATED",
};

/** The canonical upper-case name of a code ("UNAVAILABLE"). */
export function codeNameOf(code: Code): string {
  return CODE_NAMES[code] ?? `CODE_${code}`;
}
