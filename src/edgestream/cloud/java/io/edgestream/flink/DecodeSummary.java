package io.edgestream.flink;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.functions.ScalarFunction;
import org.apache.flink.types.Row;

/**
 * {@code decode_summary(value BYTES, registry STRING)}: a Confluent-framed Avro WindowSummary
 * (any registered version: v1 full, v2/v3 cloud wire form) decoded in the JVM, as one row of
 * the fields the fleet statistics read. Each channel's sum, min and max come as doubles (an
 * exact Decimal or NearDecimal form is expanded bit for bit, as
 * {@code edgestream.forward.records.expand_double} does).
 *
 * <p>A value that is not a WindowSummary does not fail the job: {@code error} is
 * {@code "<reason>: <detail>"} (reasons as {@code edgestream.core.serde.SerdeError} names them,
 * plus {@code invalid_record} for a record of another schema) and the other fields are null.
 * An unreachable registry fails the job (a missing service, not a bad record).
 */
public class DecodeSummary extends ScalarFunction {
  public static final String ROW = "ROW<error STRING, summary_id STRING, gateway_id STRING, "
      + "gateway_seq BIGINT, scope STRING, scope_key STRING, site STRING, device_type STRING, "
      + "window_start BIGINT, window_end BIGINT, `count` BIGINT, anomaly_count BIGINT, "
      + "max_score DOUBLE, first_ts BIGINT, last_ts BIGINT, model_version STRING, "
      + "late_count BIGINT, rollup_level INT, channel_names ARRAY<STRING>, "
      + "channel_counts ARRAY<BIGINT>, channel_sums ARRAY<DOUBLE>, channel_m2 ARRAY<DOUBLE>, "
      + "channel_mins ARRAY<DOUBLE>, channel_maxs ARRAY<DOUBLE>>";
  private static final int FIELDS = 24;
  private static final long UNKNOWN_ID_RETRY_MS = 30_000;
  private static final double[] POW10 = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
    1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

  private transient Map<Integer, AvroSchema> schemas;
  private transient Map<Integer, Long> unknownUntil; // schema id -> when to ask again
  private transient HttpClient http;

  public @DataTypeHint(ROW) Row eval(byte[] value, String registry) {
    if (schemas == null) {
      schemas = new HashMap<>();
      unknownUntil = new HashMap<>();
    }
    try {
      return decode(value, registry);
    } catch (AvroSchema.AvroException e) {
      Row row = new Row(FIELDS);
      row.setField(0, e.reason + ": " + e.getMessage());
      return row;
    }
  }

  private Row decode(byte[] value, String registry) {
    if (value == null || value.length == 0) {
      throw new AvroSchema.AvroException("empty", "empty message value (no Confluent header)");
    }
    if (value[0] != 0) {
      throw new AvroSchema.AvroException("bad_magic", String.format(
          "first byte is 0x%02x, not the Confluent magic byte 0x00", value[0] & 0xff));
    }
    if (value.length < 5) {
      throw new AvroSchema.AvroException(
          "truncated_header", value.length + " byte(s): the header needs 5");
    }
    int id = ((value[1] & 0xff) << 24) | ((value[2] & 0xff) << 16) | ((value[3] & 0xff) << 8)
        | (value[4] & 0xff);
    AvroSchema schema = schema(id, registry);
    if (schema.kind != AvroSchema.Kind.RECORD || !schema.name.endsWith("WindowSummary")) {
      throw new AvroSchema.AvroException("invalid_record", "schema id " + id + " writes "
          + schema.name + ", not a WindowSummary");
    }
    AvroSchema.Input in = new AvroSchema.Input(value, 5);
    @SuppressWarnings("unchecked")
    Map<String, Object> r = (Map<String, Object>) schema.read(in);
    if (in.pos != value.length) {
      throw new AvroSchema.AvroException(
          "decode", (value.length - in.pos) + " trailing byte(s) after the Avro record");
    }
    return row(r);
  }

  private static Row row(Map<String, Object> r) {
    @SuppressWarnings("unchecked")
    Map<String, Object> channels = (Map<String, Object>) r.get("channels");
    int n = channels == null ? 0 : channels.size();
    String[] names = new String[n];
    Long[] counts = new Long[n];
    Double[] sums = new Double[n];
    Double[] m2 = new Double[n];
    Double[] mins = new Double[n];
    Double[] maxs = new Double[n];
    int i = 0;
    if (channels != null) {
      for (Map.Entry<String, Object> e : channels.entrySet()) {
        @SuppressWarnings("unchecked")
        Map<String, Object> c = (Map<String, Object>) e.getValue();
        names[i] = e.getKey();
        counts[i] = (Long) c.get("count");
        sums[i] = expand(c.get("sum"));
        m2[i] = expand(c.get("m2"));
        mins[i] = expand(c.get("min"));
        maxs[i] = expand(c.get("max"));
        i++;
      }
    }
    return Row.of(null, r.get("summary_id"), r.get("gateway_id"), r.get("gateway_seq"),
        r.get("scope"), r.get("scope_key"), r.get("site"), r.get("device_type"),
        r.get("window_start"), r.get("window_end"), r.get("count"),
        r.getOrDefault("anomaly_count", 0L), r.get("max_score"), r.get("first_ts"),
        r.get("last_ts"), r.get("model_version"), r.getOrDefault("late_count", 0L),
        r.getOrDefault("rollup_level", 0), names, counts, sums, m2, mins, maxs);
  }

  /** A double, or the double of an exact Decimal / NearDecimal record; null as given. */
  static Double expand(Object value) {
    if (value == null || value instanceof Double) {
      return (Double) value;
    }
    @SuppressWarnings("unchecked")
    Map<String, Object> d = (Map<String, Object>) value;
    long unscaled = (Long) d.get("unscaled");
    int scale = (Integer) d.get("scale");
    double decimal;
    if (Math.abs(unscaled) <= (1L << 53) && scale >= 0 && scale < POW10.length) {
      decimal = unscaled / POW10[scale]; // both exact: the division rounds correctly
    } else {
      decimal = Double.parseDouble(unscaled + "E" + (-scale));
    }
    Object ulps = d.get("ulps");
    if (ulps != null && (Integer) ulps != 0) {
      decimal = Double.longBitsToDouble(Double.doubleToRawLongBits(decimal) + (Integer) ulps);
    }
    return decimal;
  }

  private AvroSchema schema(int id, String registry) {
    AvroSchema cached = schemas.get(id);
    if (cached != null) {
      return cached;
    }
    Long until = unknownUntil.get(id);
    if (until != null && System.currentTimeMillis() < until) {
      throw unknown(id, registry);
    }
    if (http == null) {
      http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();
    }
    String base = registry.endsWith("/") ? registry.substring(0, registry.length() - 1)
        : registry;
    HttpResponse<String> response;
    try {
      HttpRequest request = HttpRequest.newBuilder(URI.create(base + "/schemas/ids/" + id))
          .timeout(Duration.ofSeconds(30)).GET().build();
      response = http.send(request, HttpResponse.BodyHandlers.ofString());
    } catch (IOException e) {
      throw new IllegalStateException("schema registry unreachable at " + base + ": " + e
          + " (start it: edgestream up, or pass the registry's URL)", e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException("interrupted while asking the schema registry", e);
    }
    if (response.statusCode() == 404) {
      unknownUntil.put(id, System.currentTimeMillis() + UNKNOWN_ID_RETRY_MS);
      throw unknown(id, registry);
    }
    if (response.statusCode() != 200) {
      throw new IllegalStateException("schema registry at " + base + " answered HTTP "
          + response.statusCode() + " for schema id " + id);
    }
    String text;
    try {
      text = new ObjectMapper().readTree(response.body()).path("schema").asText("");
    } catch (IOException e) {
      throw new IllegalStateException("schema registry at " + base + " sent no JSON", e);
    }
    AvroSchema schema = AvroSchema.parse(text);
    schemas.put(id, schema);
    return schema;
  }

  private static AvroSchema.AvroException unknown(int id, String registry) {
    return new AvroSchema.AvroException("unknown_schema_id",
        "schema id " + id + " not in registry at " + registry);
  }
}
