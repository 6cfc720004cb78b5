package io.edgestream.flink;

import java.io.IOException;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.apache.avro.Schema;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.functions.ScalarFunction;
import org.apache.flink.types.Row;

/**
 * {@code decode_summary(value BYTES, registry STRING)}: a Confluent-framed Avro WindowSummary
 * (any registered version: v1 full, v2/v3 cloud wire form) decoded in the JVM with Apache
 * Avro (the writer schema from the registry, parsed by Avro; {@link AvroInput} reads the
 * fields the fleet statistics need and lets Avro skip the others), as one row of them. Each
 * channel's sum, min and max come as doubles (an exact Decimal or NearDecimal form is
 * expanded bit for bit, as {@code edgestream.wire.forms.expand_double} does).
 *
 * <p>A value that is not a WindowSummary does not fail the job: {@code error} is
 * {@code "<reason>: <detail>"} (reasons as {@code edgestream.core.serde.SerdeError} names them,
 * plus {@code invalid_record} for a record of another schema) and the other fields are null.
 * An unreachable registry fails the job (a missing service, not a bad record).
 */
public class DecodeSummary extends ScalarFunction {
  public static final String ROW = "ROW<`error` STRING, `summary_id` STRING, "
      + "`gateway_id` STRING, `gateway_seq` BIGINT, `scope` STRING, `scope_key` STRING, "
      + "`site` STRING, `device_type` STRING, `window_start` BIGINT, `window_end` BIGINT, "
      + "`count` BIGINT, `anomaly_count` BIGINT, `max_score` DOUBLE, `first_ts` BIGINT, "
      + "`last_ts` BIGINT, `model_version` STRING, `late_count` BIGINT, `rollup_level` INT, "
      + "`channel_names` ARRAY<STRING>, `channel_counts` ARRAY<BIGINT>, "
      + "`channel_sums` ARRAY<DOUBLE>, `channel_m2` ARRAY<DOUBLE>, "
      + "`channel_mins` ARRAY<DOUBLE>, `channel_maxs` ARRAY<DOUBLE>>";
  /** The row's fields in order, and their Java types (S string, L long, I int, D double). */
  static final List<String> NAMES = List.of("error", "summary_id", "gateway_id", "gateway_seq",
      "scope", "scope_key", "site", "device_type", "window_start", "window_end", "count",
      "anomaly_count", "max_score", "first_ts", "last_ts", "model_version", "late_count",
      "rollup_level", "channel_names", "channel_counts", "channel_sums", "channel_m2",
      "channel_mins", "channel_maxs");
  private static final String TYPES = "SSSLSSSSLLLLDLLSLI";
  private static final int FIELDS = NAMES.size();
  private static final int CHANNELS = NAMES.indexOf("channel_names");
  /** The ChannelStats fields read, in the order of the channel arrays after the names. */
  private static final List<String> CHANNEL_FIELDS = List.of("count", "sum", "m2", "min", "max");
  private static final double[] POW10 = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
    1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

  private transient Map<Integer, Plan> plans;
  private transient Map<Integer, BadRecord> notSummaries; // schema id -> why
  private transient Registry registry;
  private transient AvroInput in;

  public @DataTypeHint(ROW) Row eval(byte[] value, String registryUrl) {
    if (registry == null || !registry.base.equals(Registry.base(registryUrl))) {
      init(new Registry(registryUrl));
    }
    try {
      Object[] fields = decode(value);
      ((Channels) fields[CHANNELS]).toRow(fields);
      return Row.of(fields);
    } catch (BadRecord e) {
      return failed(e.reason + ": " + e.getMessage());
    }
  }

  /** Decodes with {@code registry}'s schemas (this class used outside a query). */
  void init(Registry registry) {
    this.registry = registry;
    in = new AvroInput();
    plans = new HashMap<>();
    notSummaries = new HashMap<>();
  }

  private static Row failed(String error) {
    Row row = new Row(FIELDS);
    row.setField(0, error);
    return row;
  }

  /** The row's fields of a value, the channels as one {@link Channels} in the
   * {@code channel_names} slot (the other channel slots empty); an
   * {@link BadRecord} for a bad one (an unforeseen exception on a corrupt body
   * becomes one too); a {@link Registry.RegistryUnavailable} when the registry cannot be
   * asked. */
  Object[] decode(byte[] value) {
    try {
      return fields(value);
    } catch (Registry.RegistryUnavailable e) {
      throw e; // a missing service fails the job; a bad record never does
    } catch (IOException | RuntimeException e) { // a corrupt body
      throw AvroInput.corrupt(e);
    }
  }

  private Object[] fields(byte[] value) throws IOException {
    int id = Registry.schemaId(value);
    Plan plan = plan(id);
    in.start(value);
    Object[] out = plan.defaults.clone();
    if (plan.channelStats == null) {
      out[CHANNELS] = new Channels();
    }
    List<Schema.Field> fields = plan.schema.getFields();
    for (int i = 0; i < plan.slots.length; i++) {
      Schema field = fields.get(i).schema();
      int slot = plan.slots[i];
      if (slot == CHANNELS) {
        channels(plan, in, out);
      } else if (slot < 0) {
        in.skip(field);
      } else {
        out[slot] = convert(slot, in.read(field));
      }
    }
    in.end();
    return out;
  }

  /** A top-level value as the type of its output slot (an int writer field for a BIGINT). */
  private static Object convert(int slot, Object v) {
    if (v == null) {
      return null;
    }
    char type = TYPES.charAt(slot);
    if (type == 'S' && v instanceof String) {
      return v;
    }
    if (v instanceof Number) {
      Number n = (Number) v;
      switch (type) {
        case 'L': return n.longValue();
        case 'I': return n.intValue();
        case 'D': return n.doubleValue();
        default:
      }
    }
    throw new BadRecord("invalid_record",
        "field " + NAMES.get(slot) + " is a " + v.getClass().getSimpleName());
  }

  /** A summary's channels: names and, per {@link #CHANNEL_FIELDS} statistic, values and
   * whether each is present (primitive arrays: the fleet statistics read them as they are). */
  static final class Channels {
    int size;
    String[] names = new String[8];
    final double[][] values = new double[CHANNEL_FIELDS.size()][8];
    final boolean[][] present = new boolean[CHANNEL_FIELDS.size()][8];

    private void grow() {
      int n = 2 * names.length;
      names = Arrays.copyOf(names, n);
      for (int k = 0; k < values.length; k++) {
        values[k] = Arrays.copyOf(values[k], n);
        present[k] = Arrays.copyOf(present[k], n);
      }
    }

    /** The six parallel arrays of the SQL row, in place of this object. */
    void toRow(Object[] out) {
      out[CHANNELS] = Arrays.copyOf(names, size);
      Long[] counts = new Long[size];
      for (int i = 0; i < size; i++) {
        counts[i] = present[0][i] ? (long) values[0][i] : null;
      }
      out[CHANNELS + 1] = counts;
      for (int k = 1; k < values.length; k++) {
        Double[] column = new Double[size];
        for (int i = 0; i < size; i++) {
          column[i] = present[k][i] ? values[k][i] : null;
        }
        out[CHANNELS + 1 + k] = column;
      }
    }
  }

  /** The channels map, into a {@link Channels}. */
  private static void channels(Plan plan, AvroInput in, Object[] out) throws IOException {
    Channels c = new Channels();
    List<Schema.Field> stats = plan.channelStats.getFields();
    for (long n = in.mapBlock(true); n != 0; n = in.mapBlock(false)) {
      for (long j = 0; j < n; j++) {
        if (c.size == c.names.length) {
          c.grow();
        }
        int i = c.size++;
        c.names[i] = in.readString();
        for (int k = 0; k < plan.channelSlots.length; k++) {
          int slot = plan.channelSlots[k];
          if (slot < 0) {
            in.skip(stats.get(k).schema());
          } else {
            c.present[slot][i] = number(stats.get(k).schema(), in, c.values[slot], i);
          }
        }
      }
    }
    out[CHANNELS] = c;
  }

  /** A numeric value as a double into {@code into[i]}: a double, a long, an exact Decimal /
   * NearDecimal record (expanded bit for bit); false for null. */
  private static boolean number(Schema s, AvroInput in, double[] into, int i)
      throws IOException {
    switch (s.getType()) {
      case NULL: return false;
      case DOUBLE: into[i] = in.readDouble(); return true;
      case FLOAT: into[i] = in.readFloat(); return true;
      case INT:
      case LONG: into[i] = in.readLong(); return true;
      case UNION: return number(in.branch(s), in, into, i);
      case RECORD: {
        long unscaled = 0;
        int scale = 0;
        int ulps = 0;
        for (Schema.Field f : s.getFields()) {
          switch (f.name()) {
            case "unscaled": unscaled = in.readLong(); break;
            case "scale": scale = in.readInt(); break;
            case "ulps": ulps = in.readInt(); break;
            default: in.skip(f.schema());
          }
        }
        into[i] = expand(unscaled, scale, ulps);
        return true;
      }
      default:
        throw new BadRecord("invalid_record",
            "a channel statistic of type " + s.getType() + " is not a number");
    }
  }

  /** The double nearest to {@code unscaled / 10^scale}, moved by {@code ulps} steps of its
   * bit pattern (as {@code edgestream.wire.forms.expand_double}). */
  static double expand(long unscaled, int scale, int ulps) {
    double decimal;
    if (Math.abs(unscaled) <= (1L << 53) && scale >= 0 && scale < POW10.length) {
      decimal = unscaled / POW10[scale]; // both exact: the division rounds correctly
    } else {
      decimal = Double.parseDouble(unscaled + "E" + (-scale));
    }
    if (ulps != 0) {
      decimal = Double.longBitsToDouble(Double.doubleToRawLongBits(decimal) + ulps);
    }
    return decimal;
  }

  /** How to read one writer schema: the output slot of each writer field (-1: skipped). */
  private static final class Plan {
    final Schema schema;
    final int[] slots;
    final Object[] defaults = new Object[FIELDS];
    Schema channelStats;
    int[] channelSlots;

    Plan(int id, Schema schema) {
      if (schema.getType() != Schema.Type.RECORD
          || !schema.getFullName().endsWith("WindowSummary")) {
        throw new BadRecord("invalid_record", "schema id " + id + " writes "
            + schema.getFullName() + ", not a WindowSummary");
      }
      this.schema = schema;
      defaults[NAMES.indexOf("anomaly_count")] = 0L; // the schema's defaults
      defaults[NAMES.indexOf("late_count")] = 0L;
      defaults[NAMES.indexOf("rollup_level")] = 0;
      // no channels field: the empty Channels (fields() clones these defaults per value)
      List<Schema.Field> fields = schema.getFields();
      slots = new int[fields.size()];
      for (int i = 0; i < slots.length; i++) {
        String name = fields.get(i).name();
        slots[i] = name.equals("channels") ? CHANNELS : NAMES.indexOf(name);
        if (slots[i] >= CHANNELS && !name.equals("channels")) {
          slots[i] = -1;
        }
        if (slots[i] == CHANNELS) {
          Schema map = fields.get(i).schema();
          if (map.getType() != Schema.Type.MAP
              || map.getValueType().getType() != Schema.Type.RECORD) {
            throw new BadRecord("invalid_record",
                "channels is not a map of records in schema id " + id);
          }
          channelStats = map.getValueType();
          List<Schema.Field> stats = channelStats.getFields();
          channelSlots = new int[stats.size()];
          for (int k = 0; k < channelSlots.length; k++) {
            channelSlots[k] = CHANNEL_FIELDS.indexOf(stats.get(k).name());
          }
        }
      }
    }
  }

  private Plan plan(int id) {
    Plan cached = plans.get(id);
    if (cached != null) {
      return cached;
    }
    BadRecord known = notSummaries.get(id);
    if (known != null) {
      throw known;
    }
    try {
      cached = new Plan(id, registry.schema(id));
    } catch (BadRecord e) {
      if (!e.reason.equals("unknown_schema_id")) { // asked again after a while (Registry)
        notSummaries.put(id, e);
      }
      throw e;
    }
    plans.put(id, cached);
    return cached;
  }
}
