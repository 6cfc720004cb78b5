package io.edgestream.flink;

/** JSON text written by hand: numbers as Python's {@code json} writes them (NaN and the
 * infinities as its non-standard tokens), strings escaped. */
final class Json {
  private Json() {}

  static void number(StringBuilder b, Double v) {
    if (v == null) {
      b.append("null");
    } else {
      b.append(Double.toString(v)); // round-trips; NaN, Infinity, -Infinity as Python writes
    }
  }

  static void string(StringBuilder b, String s) {
    b.append('"');
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      switch (c) {
        case '"': b.append("\\\""); break;
        case '\\': b.append("\\\\"); break;
        case '\n': b.append("\\n"); break;
        case '\r': b.append("\\r"); break;
        case '\t': b.append("\\t"); break;
        default:
          if (c < 0x20) {
            b.append(String.format("\\u%04x", (int) c));
          } else {
            b.append(c);
          }
      }
    }
    b.append('"');
  }

  static String string(String s) {
    StringBuilder b = new StringBuilder(s.length() + 2);
    string(b, s);
    return b.toString();
  }
}
