package io.edgestream.flink;

import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;

/**
 * An Avro writer schema, parsed once, and the binary decoder it drives (Avro 1.11 spec: the
 * binary encoding of every type; logical types are their underlying type).
 *
 * <p>No Avro library ships with this Flink (no flink-avro jar), so this is the small part of
 * one that our functions need: {@link #skip} moves past a value of any type; {@link #read}
 * decodes a single value (unions to the branch's value, strings to {@code String}, bytes and
 * fixed to {@code byte[]}, enums to the symbol); records, arrays and maps are walked field by
 * field by the caller. Malformed input throws {@link AvroException}.
 */
public final class AvroSchema {
  /** The kinds of Avro type. */
  enum Kind { NULL, BOOLEAN, INT, LONG, FLOAT, DOUBLE, BYTES, STRING, RECORD, ENUM, ARRAY, MAP,
    FIXED, UNION }

  final Kind kind;
  final String name; // full name of a named type, else null
  final List<String> fieldNames = new ArrayList<>();
  final List<AvroSchema> fields = new ArrayList<>(); // record fields; union branches
  final List<String> symbols = new ArrayList<>();
  AvroSchema items; // array items, map values
  int size; // fixed

  private AvroSchema(Kind kind, String name) {
    this.kind = kind;
    this.name = name;
  }

  /** The parsed form of a schema's JSON text. */
  public static AvroSchema parse(String json) {
    try {
      return parse(new ObjectMapper().readTree(json), null, new HashMap<>());
    } catch (AvroException e) {
      throw e;
    } catch (Exception e) {
      throw new AvroException("schema_mismatch", "not an Avro schema: " + e.getMessage());
    }
  }

  private static String fullName(String name, String namespace) {
    if (name.contains(".") || namespace == null || namespace.isEmpty()) {
      return name;
    }
    return namespace + "." + name;
  }

  private static AvroSchema parse(JsonNode node, String namespace, Map<String, AvroSchema> named) {
    if (node.isArray()) {
      AvroSchema union = new AvroSchema(Kind.UNION, null);
      for (JsonNode branch : node) {
        union.fields.add(parse(branch, namespace, named));
      }
      return union;
    }
    if (node.isTextual()) {
      String type = node.asText();
      switch (type) {
        case "null": return new AvroSchema(Kind.NULL, null);
        case "boolean": return new AvroSchema(Kind.BOOLEAN, null);
        case "int": return new AvroSchema(Kind.INT, null);
        case "long": return new AvroSchema(Kind.LONG, null);
        case "float": return new AvroSchema(Kind.FLOAT, null);
        case "double": return new AvroSchema(Kind.DOUBLE, null);
        case "bytes": return new AvroSchema(Kind.BYTES, null);
        case "string": return new AvroSchema(Kind.STRING, null);
        default:
          AvroSchema ref = named.get(fullName(type, namespace));
          if (ref == null) {
            ref = named.get(type);
          }
          if (ref == null) {
            throw new AvroException("schema_mismatch", "unknown type name " + type);
          }
          return ref;
      }
    }
    String type = node.path("type").asText();
    switch (type) {
      case "record":
      case "error": {
        String ns = node.has("namespace") ? node.get("namespace").asText() : namespace;
        String name = fullName(node.get("name").asText(), ns);
        String inner = name.contains(".") ? name.substring(0, name.lastIndexOf('.')) : ns;
        AvroSchema record = new AvroSchema(Kind.RECORD, name);
        named.put(name, record); // before the fields: a record may refer to itself
        for (JsonNode field : node.get("fields")) {
          record.fieldNames.add(field.get("name").asText());
          record.fields.add(parse(field.get("type"), inner, named));
        }
        return record;
      }
      case "enum": {
        String ns = node.has("namespace") ? node.get("namespace").asText() : namespace;
        AvroSchema e = new AvroSchema(Kind.ENUM, fullName(node.get("name").asText(), ns));
        for (JsonNode s : node.get("symbols")) {
          e.symbols.add(s.asText());
        }
        named.put(e.name, e);
        return e;
      }
      case "fixed": {
        String ns = node.has("namespace") ? node.get("namespace").asText() : namespace;
        AvroSchema f = new AvroSchema(Kind.FIXED, fullName(node.get("name").asText(), ns));
        f.size = node.get("size").asInt();
        named.put(f.name, f);
        return f;
      }
      case "array": {
        AvroSchema a = new AvroSchema(Kind.ARRAY, null);
        a.items = parse(node.get("items"), namespace, named);
        return a;
      }
      case "map": {
        AvroSchema m = new AvroSchema(Kind.MAP, null);
        m.items = parse(node.get("values"), namespace, named);
        return m;
      }
      default: // {"type": "long", "logicalType": ...} and the like
        return parse(node.get("type"), namespace, named);
    }
  }

  /** A position in a byte array being decoded. */
  static final class Input {
    final byte[] data;
    int pos;

    Input(byte[] data, int pos) {
      this.data = data;
      this.pos = pos;
    }

    private byte next() {
      if (pos >= data.length) {
        throw new AvroException("decode", "corrupt Avro body (the body ends early)");
      }
      return data[pos++];
    }

    long readLong() {
      long raw = 0;
      int shift = 0;
      while (true) {
        byte b = next();
        raw |= (long) (b & 0x7f) << shift;
        if ((b & 0x80) == 0) {
          break;
        }
        shift += 7;
        if (shift > 63) {
          throw new AvroException("decode", "corrupt Avro body (a varint over 10 bytes)");
        }
      }
      return (raw >>> 1) ^ -(raw & 1);
    }

    int readInt() {
      long value = readLong();
      if (value != (int) value) {
        throw new AvroException("decode", "corrupt Avro body (an int out of range)");
      }
      return (int) value;
    }

    private long littleEndian(int bytes) {
      if (pos + bytes > data.length) {
        throw new AvroException("decode", "corrupt Avro body (the body ends early)");
      }
      long v = 0;
      for (int i = 0; i < bytes; i++) {
        v |= (data[pos + i] & 0xffL) << (8 * i);
      }
      pos += bytes;
      return v;
    }

    double readDouble() {
      return Double.longBitsToDouble(littleEndian(8));
    }

    float readFloat() {
      return Float.intBitsToFloat((int) littleEndian(4));
    }

    void skip(long length) {
      if (length < 0 || pos + length > data.length) {
        throw new AvroException("decode", "corrupt Avro body (a length past the end)");
      }
      pos += (int) length;
    }

    byte[] readBytes(long length) {
      if (length < 0 || pos + length > data.length) {
        throw new AvroException("decode", "corrupt Avro body (a length past the end)");
      }
      byte[] out = java.util.Arrays.copyOfRange(data, pos, pos + (int) length);
      pos += (int) length;
      return out;
    }

    String readString() {
      long length = readLong();
      if (length < 0 || pos + length > data.length) {
        throw new AvroException("decode", "corrupt Avro body (a length past the end)");
      }
      int start = pos;
      int end = pos + (int) length;
      pos = end;
      boolean ascii = true;
      for (int i = start; i < end && ascii; i++) {
        ascii = data[i] >= 0;
      }
      if (ascii) {
        return new String(data, start, end - start, StandardCharsets.US_ASCII);
      }
      try { // malformed UTF-8 is a corrupt record (as fastavro says), not replaced silently
        return UTF8.get().decode(ByteBuffer.wrap(data, start, end - start)).toString();
      } catch (CharacterCodingException e) {
        throw new AvroException("decode", "corrupt Avro body (a string that is not UTF-8)");
      }
    }
  }

  private static final ThreadLocal<CharsetDecoder> UTF8 = ThreadLocal.withInitial(
      () -> StandardCharsets.UTF_8.newDecoder()
          .onMalformedInput(CodingErrorAction.REPORT)
          .onUnmappableCharacter(CodingErrorAction.REPORT));

  /** Move the input past a value of this schema without building it. */
  void skip(Input in) {
    switch (kind) {
      case NULL: return;
      case BOOLEAN: in.skip(1); return;
      case INT:
      case LONG:
      case ENUM: in.readLong(); return;
      case FLOAT: in.skip(4); return;
      case DOUBLE: in.skip(8); return;
      case BYTES:
      case STRING: in.skip(in.readLong()); return;
      case FIXED: in.skip(size); return;
      case UNION: branch(in).skip(in); return;
      case RECORD:
        for (AvroSchema field : fields) {
          field.skip(in);
        }
        return;
      case ARRAY:
      case MAP:
        for (long n = blockCount(in, kind == Kind.ARRAY ? items : null); n != 0;
            n = blockCount(in, kind == Kind.ARRAY ? items : null)) {
          for (long j = 0; j < n; j++) {
            if (kind == Kind.MAP) {
              in.skip(in.readLong());
            }
            items.skip(in);
          }
        }
        return;
      default:
        throw new IllegalStateException(kind.toString());
    }
  }

  /** The branch of a union whose index is next in the input. */
  AvroSchema branch(Input in) {
    long i = in.readLong();
    if (i < 0 || i >= fields.size()) {
      throw new AvroException("decode", "corrupt Avro body (union branch " + i + ")");
    }
    return fields.get((int) i);
  }

  /** The single value (not a record, array or map: those are read field by field, by the
   * caller's plan) of this schema at the input's position; the position moves past it. */
  Object read(Input in) {
    switch (kind) {
      case NULL: return null;
      case BOOLEAN: return in.readBytes(1)[0] != 0;
      case INT: return in.readInt();
      case LONG: return in.readLong();
      case FLOAT: return in.readFloat();
      case DOUBLE: return in.readDouble();
      case BYTES: return in.readBytes(in.readLong());
      case STRING: return in.readString();
      case FIXED: return in.readBytes(size);
      case ENUM: {
        int i = in.readInt();
        if (i < 0 || i >= symbols.size()) {
          throw new AvroException("decode", "corrupt Avro body (enum index " + i + ")");
        }
        return symbols.get(i);
      }
      case UNION: return branch(in).read(in);
      case RECORD:
      case ARRAY:
      case MAP:
        throw new AvroException("invalid_record", "a " + kind.toString().toLowerCase()
            + " where a single value was expected");
      default:
        throw new IllegalStateException(kind.toString());
    }
  }

  /** The item count of the next block of an array or map; {@code items} null for a map
   * (its keys take bytes). */
  static long blockCount(Input in, AvroSchema items) {
    long n = in.readLong();
    if (n < 0) { // a negative count is followed by the block's size in bytes
      in.readLong();
      n = -n;
    }
    // an item takes at least one byte unless it is a null: a count past the end is corrupt
    boolean empty = items != null && items.kind == Kind.NULL;
    if (!empty && n > in.data.length - in.pos) {
      throw new AvroException("decode", "corrupt Avro body (a block count past the end)");
    }
    return n;
  }

  /** A record that cannot be decoded: {@code reason} as the Python serdes name it. */
  public static final class AvroException extends RuntimeException {
    final String reason;

    AvroException(String reason, String detail) {
      super(detail, null, false, false);
      this.reason = reason;
    }
  }
}
