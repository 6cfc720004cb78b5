package io.edgestream.flink;

/**
 * A record that cannot be decoded; {@link #reason} as the Python serdes name it
 * ({@code edgestream.core.serde.SerdeError}: {@code empty}, {@code bad_magic},
 * {@code truncated_header}, {@code unknown_schema_id}, {@code schema_mismatch},
 * {@code decode}, plus {@code invalid_record} for a record of another schema). A bad record
 * goes to the dead-letter topic; it never fails a job.
 */
public final class BadRecord extends RuntimeException {
  final String reason;

  BadRecord(String reason, String detail) {
    super(detail, null, false, false);
    this.reason = reason;
  }
}
