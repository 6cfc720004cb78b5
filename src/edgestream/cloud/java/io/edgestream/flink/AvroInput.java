package io.edgestream.flink;

import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.List;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.DecoderFactory;

/**
 * The body of a Confluent-framed Avro value (from byte 5), read with Apache Avro's
 * {@link BinaryDecoder} by a caller that walks the writer's {@link Schema} field by field.
 *
 * <p>Avro's decoder trusts lengths: a corrupt string length or map count would make it
 * allocate up to 2 GB before it finds the body too short. Here a length or count past the
 * bytes left is a corrupt body, strings must be UTF-8 (as fastavro says; Avro would replace
 * bad bytes), and an int out of range is corrupt (Avro drops the high bits). Every failure is
 * a {@link BadRecord} with the Python serdes' reasons ({@link #corrupt}).
 * One instance per thread, reused: {@link #start} moves it to the next value.
 */
final class AvroInput {
  private static final DecoderFactory FACTORY = DecoderFactory.get();
  private static final ThreadLocal<CharsetDecoder> UTF8 = ThreadLocal.withInitial(
      () -> StandardCharsets.UTF_8.newDecoder()
          .onMalformedInput(CodingErrorAction.REPORT)
          .onUnmappableCharacter(CodingErrorAction.REPORT));

  private BinaryDecoder in;
  private InputStream rest; // available(): the bytes of the value not read yet
  private byte[] scratch = new byte[64];

  /** Reads {@code value}'s body next (its 5-byte header already checked by the caller). */
  AvroInput start(byte[] value) {
    in = FACTORY.binaryDecoder(value, 5, value.length - 5, in);
    rest = in.inputStream();
    return this;
  }

  /** The bytes of the value not read yet. */
  int left() throws IOException {
    return rest.available();
  }

  /** Fails unless the whole value was read. */
  void end() throws IOException {
    int left = left();
    if (left != 0) {
      throw new BadRecord(
          "decode", left + " trailing byte(s) after the Avro record");
    }
  }

  private int length(long n) throws IOException {
    if (n < 0 || n > left()) {
      throw new BadRecord("decode", "corrupt Avro body (a length past the end)");
    }
    return (int) n;
  }

  long readLong() throws IOException {
    return in.readLong();
  }

  int readInt() throws IOException {
    long value = in.readLong(); // the same varint on the wire; Avro's readInt wraps around
    if (value != (int) value) {
      throw new BadRecord("decode", "corrupt Avro body (an int out of range)");
    }
    return (int) value;
  }

  double readDouble() throws IOException {
    return in.readDouble();
  }

  float readFloat() throws IOException {
    return in.readFloat();
  }

  String readString() throws IOException {
    int n = length(in.readLong());
    if (n > scratch.length) {
      scratch = new byte[Math.max(n, 2 * scratch.length)];
    }
    in.readFixed(scratch, 0, n);
    boolean ascii = true;
    for (int i = 0; i < n && ascii; i++) {
      ascii = scratch[i] >= 0;
    }
    if (ascii) {
      return new String(scratch, 0, n, StandardCharsets.US_ASCII);
    }
    try {
      return UTF8.get().decode(ByteBuffer.wrap(scratch, 0, n)).toString();
    } catch (CharacterCodingException e) {
      throw new BadRecord("decode", "corrupt Avro body (a string that is not UTF-8)");
    }
  }

  byte[] readBytes(int size) throws IOException {
    byte[] out = new byte[length(size)];
    in.readFixed(out);
    return out;
  }

  /** The branch of {@code union} whose index is next. */
  Schema branch(Schema union) throws IOException {
    List<Schema> types = union.getTypes();
    long i = in.readLong();
    if (i < 0 || i >= types.size()) {
      throw new BadRecord("decode", "corrupt Avro body (union branch " + i + ")");
    }
    return types.get((int) i);
  }

  /** The entry count of a map's next block ({@code first}: its first), 0 at its end. */
  long mapBlock(boolean first) throws IOException {
    long n = first ? in.readMapStart() : in.mapNext();
    if (n > left()) { // an entry takes at least its key's length byte
      throw new BadRecord(
          "decode", "corrupt Avro body (a block count past the end)");
    }
    return n;
  }

  /** Moves past a value of {@code schema} without building it (Avro's own skip). */
  void skip(Schema schema) throws IOException {
    GenericDatumReader.skip(schema, in);
  }

  /** The single value (not a record, array or map) of {@code schema} that is next: a union
   * as its branch's value, strings as {@code String}, bytes and fixed as {@code byte[]},
   * enums as the symbol, logical types as their underlying type. */
  Object read(Schema schema) throws IOException {
    switch (schema.getType()) {
      case NULL: return null;
      case BOOLEAN: return in.readBoolean();
      case INT: return readInt();
      case LONG: return in.readLong();
      case FLOAT: return in.readFloat();
      case DOUBLE: return in.readDouble();
      case STRING: return readString();
      case BYTES: return readBytes(length(in.readLong()));
      case FIXED: return readBytes(schema.getFixedSize());
      case ENUM: {
        int i = readInt();
        if (i < 0 || i >= schema.getEnumSymbols().size()) {
          throw new BadRecord("decode", "corrupt Avro body (enum index " + i + ")");
        }
        return schema.getEnumSymbols().get(i);
      }
      case UNION: return read(branch(schema));
      default:
        throw new BadRecord("invalid_record", "a "
            + schema.getType().getName() + " where a single value was expected");
    }
  }

  /** A failure while decoding as a bad record: the Avro errors that a corrupt body gives
   * (the body ends early, a varint over 10 bytes, ...) are {@code decode} errors. */
  static BadRecord corrupt(Exception e) {
    if (e instanceof BadRecord) {
      return (BadRecord) e;
    }
    String why = e instanceof EOFException ? "the body ends early" : e.toString();
    return new BadRecord("decode", "corrupt Avro body (" + why + ")");
  }
}
