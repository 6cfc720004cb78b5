package io.edgestream.flink;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Base64;
import java.util.HashMap;
import java.util.Map;
import org.apache.avro.Schema;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;

/**
 * The writer schemas of Confluent-framed Avro values, asked of a schema registry once per id
 * and parsed by Apache Avro.
 *
 * <p>A bad header, an unknown id or a text that is no Avro schema is a {@link BadRecord} (a
 * bad record, with the Python serdes' reasons: {@code empty}, {@code bad_magic},
 * {@code truncated_header}, {@code unknown_schema_id}, {@code schema_mismatch}; an unknown id
 * is asked again after 30 s); an unreachable registry
 * is a {@link RegistryUnavailable} (a missing service: the job fails with what to start).
 * A registry with users gets {@code $EDGESTREAM_REGISTRY_USER_INFO} ({@code name:password}) as
 * HTTP Basic credentials, as edgestream's Python clients send it.
 */
final class Registry {
  private static final long UNKNOWN_ID_RETRY_MS = 30_000;
  static final String USER_INFO_ENV = "EDGESTREAM_REGISTRY_USER_INFO";

  final String base;
  private final Map<Integer, Schema> schemas = new HashMap<>();
  private final Map<Integer, Long> unknownUntil = new HashMap<>(); // id -> when to ask again
  private HttpClient http;

  Registry(String url) {
    base = base(url);
  }

  /** A registry URL without its trailing slash. */
  static String base(String url) {
    return url.endsWith("/") ? url.substring(0, url.length() - 1) : url;
  }

  /** The schema registry cannot be asked: the job fails with what to start. */
  static final class RegistryUnavailable extends IllegalStateException {
    RegistryUnavailable(String message, Throwable cause) {
      super(message, cause);
    }
  }

  /** The schema id of a Confluent-framed value (its body starts at byte 5). */
  static int schemaId(byte[] value) {
    if (value == null || value.length == 0) {
      throw new BadRecord("empty", "empty message value (no Confluent header)");
    }
    if (value[0] != 0) {
      throw new BadRecord("bad_magic", String.format(
          "first byte is 0x%02x, not the Confluent magic byte 0x00", value[0] & 0xff));
    }
    if (value.length < 5) {
      throw new BadRecord(
          "truncated_header", value.length + " byte(s): the header needs 5");
    }
    return ((value[1] & 0xff) << 24) | ((value[2] & 0xff) << 16) | ((value[3] & 0xff) << 8)
        | (value[4] & 0xff);
  }

  /** The writer schema of id {@code id}. */
  Schema schema(int id) {
    Schema cached = schemas.get(id);
    if (cached != null) {
      return cached;
    }
    String text = text(id);
    try {
      cached = new Schema.Parser().parse(text);
    } catch (RuntimeException e) { // SchemaParseException, or Jackson's on text not JSON
      throw new BadRecord("schema_mismatch", "schema id " + id
          + " is not an Avro schema: " + e.getMessage());
    }
    schemas.put(id, cached);
    return cached;
  }

  /** The JSON text of schema id {@code id}. */
  private String text(int id) {
    Long until = unknownUntil.get(id);
    if (until != null && System.currentTimeMillis() < until) {
      throw unknown(id);
    }
    if (http == null) {
      http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();
    }
    HttpResponse<String> response;
    try {
      HttpRequest.Builder request = HttpRequest.newBuilder(
          URI.create(base + "/schemas/ids/" + id)).timeout(Duration.ofSeconds(30)).GET();
      String userInfo = System.getenv(USER_INFO_ENV);
      if (userInfo != null && !userInfo.isBlank()) {
        request.header("Authorization", "Basic " + Base64.getEncoder().encodeToString(
            userInfo.strip().getBytes(StandardCharsets.UTF_8)));
      }
      response = http.send(request.build(), HttpResponse.BodyHandlers.ofString());
    } catch (IOException e) {
      throw new RegistryUnavailable("schema registry unreachable at " + base + ": " + e
          + " (start it: edgestream up, or pass the registry's URL)", e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new RegistryUnavailable("interrupted while asking the schema registry", e);
    }
    if (response.statusCode() == 404) {
      unknownUntil.put(id, System.currentTimeMillis() + UNKNOWN_ID_RETRY_MS);
      throw unknown(id);
    }
    if (response.statusCode() == 401 || response.statusCode() == 403) {
      throw new RegistryUnavailable("schema registry at " + base + " refused schema id " + id
          + " (HTTP " + response.statusCode() + "): set " + USER_INFO_ENV
          + "=name:password of a registry user", null);
    }
    if (response.statusCode() != 200) {
      throw new RegistryUnavailable("schema registry at " + base + " answered HTTP "
          + response.statusCode() + " for schema id " + id, null);
    }
    try {
      return new ObjectMapper().readTree(response.body()).path("schema").asText("");
    } catch (IOException e) {
      throw new RegistryUnavailable("schema registry at " + base + " sent no JSON", e);
    }
  }

  private BadRecord unknown(int id) {
    return new BadRecord("unknown_schema_id",
        "schema id " + id + " not in registry at " + base);
  }
}
