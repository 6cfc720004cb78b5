package io.edgestream.flink;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.lang.management.GarbageCollectorMXBean;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;
import org.apache.avro.Schema;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The fleet statistics of the cloud job over the raw records of {@code fleet.summaries}
 * (input 0) and {@code fleet.alerts} (input 1): Avro decoding, replay dedup, per-partition
 * watermarks with idleness, and {@link FleetStats}. Per summary, in this order: replays are
 * dropped ({@code gateway_id} + {@code gateway_seq}, else the record id: {@code summary_id},
 * or {@code gateway|scope|scope_key|window_start|window_end} when null on the wire), the
 * summary is counted, its partition's event time (its {@code window_start}) moves, and the
 * windows the new watermark closes fire. Alerts never move a watermark (they travel ahead of
 * the summaries of their window): they count while their window is open, else as late.
 * Every partition of the summaries topic holds the watermark back from the start, until it
 * delivers or goes idle.
 *
 * <p>{@link #row} takes one record (or a heartbeat, input {@link #TICK}) and returns what to
 * write: {@code stats} rows (JSON, key {@code window_start|scope|scope_key}), {@code rate}
 * rows (a {@code device_type} row's anomaly-rate fields at its first firing, for the Python
 * engine's trigger), {@code dlq}
 * records (the original bytes, headers as JSON) and, at the end of a bounded run, one
 * {@code meta} row (the run's counts). A record that cannot be used never fails the job; an
 * unreachable schema registry does.
 *
 * <p>The configuration is a JSON object (written by {@code edgestream.cloud.job}):
 * {@code registry}, {@code topics} (the two input topics), {@code window_ms},
 * {@code allowed_lateness_ms}, {@code worst_n}, {@code source_window_ms} (or null),
 * {@code retention_ms}, {@code max_out_of_orderness_ms}, {@code idle_timeout_ms} (or null),
 * {@code tick_ms}, {@code partitions} (per input, the partition ids) and {@code ends} (null,
 * or per input an object partition -> end offset: a bounded run).
 */
public final class FleetAnalytics {
  static final int TICK = -1;
  private static final Logger LOG = LoggerFactory.getLogger(FleetAnalytics.class);
  private static final Pattern CONSECUTIVE = Pattern.compile(":consecutive\\(\\d+\\)$");
  private static final List<String> F = DecodeSummary.NAMES;
  private static final int SUMMARY_ID = F.indexOf("summary_id");
  private static final int GATEWAY_ID = F.indexOf("gateway_id");
  private static final int GATEWAY_SEQ = F.indexOf("gateway_seq");
  private static final int SCOPE = F.indexOf("scope");
  private static final int SCOPE_KEY = F.indexOf("scope_key");
  private static final int SITE = F.indexOf("site");
  private static final int DEVICE_TYPE = F.indexOf("device_type");
  private static final int WINDOW_START = F.indexOf("window_start");
  private static final int WINDOW_END = F.indexOf("window_end");
  private static final int COUNT = F.indexOf("count");
  private static final int ANOMALY_COUNT = F.indexOf("anomaly_count");
  private static final int MAX_SCORE = F.indexOf("max_score");
  private static final int MODEL_VERSION = F.indexOf("model_version");
  private static final int ROLLUP_LEVEL = F.indexOf("rollup_level");
  private static final int CHANNEL_NAMES = F.indexOf("channel_names");
  /** The AnomalyAlert fields read (the rest of an alert is skipped). */
  static final List<String> ALERT_FIELDS = List.of("alert_id", "incident_id", "status",
      "update_number", "gateway_id", "gateway_seq", "site", "device_id", "device_type", "rule",
      "ts", "first_ts");

  /** One output: kind, key, value, DLQ headers (JSON) and the scope of a stats row. */
  public record Out(String kind, byte[] key, byte[] value, String headers, String scope) {}

  private final String[] topics;
  private final Registry registry;
  private final DecodeSummary summaries = new DecodeSummary();
  private final AvroInput alerts = new AvroInput();
  private final Map<Integer, int[]> alertPlans = new HashMap<>(); // schema id -> slot per field
  private final Map<Integer, BadRecord> notAlerts = new HashMap<>();
  private final Dedup dedup;
  private final Watermarks marks;
  final FleetStats stats;
  final Map<String, Long> counts = new LinkedHashMap<>();
  private final long tickMs;
  private long nextTick;
  private Map<Long, Long> pending; // input << 32 | partition -> the last offset still to come
  private long records;
  private long firstMs;
  private long lastMs;
  /** processing time at every {@link #MARK_EVERY}th record: how the rate moved during the run
   * (the JIT's warm-up, the Python worker's start) */
  private long[] marksMs = new long[64];
  private static final int MARK_EVERY = 8192;
  private long decodeNs;
  private long engineNs;
  private long gcMsAtFirst; // collectors' total time when the first record came
  private long cpuNsAtFirst; // this thread's CPU time then

  public FleetAnalytics(String configJson, long now) {
    JsonNode c;
    try {
      c = new ObjectMapper().readTree(configJson);
    } catch (Exception e) {
      throw new IllegalArgumentException("fleet statistics: bad configuration: " + e, e);
    }
    topics = new String[] {c.get("topics").get(0).asText(), c.get("topics").get(1).asText()};
    registry = new Registry(c.get("registry").asText());
    summaries.init(registry);
    dedup = new Dedup(c.path("dedup_window").asInt(Dedup.WINDOW),
        c.path("dedup_id_memory").asInt(Dedup.ID_MEMORY));
    JsonNode source = c.path("source_window_ms");
    stats = new FleetStats(c.get("window_ms").asLong(), c.get("allowed_lateness_ms").asLong(),
        c.get("worst_n").asInt(), source.isNumber() ? source.asLong() : null,
        c.path("retention_ms").asLong(FleetStats.DAY_MS));
    JsonNode idle = c.path("idle_timeout_ms");
    marks = new Watermarks(c.get("max_out_of_orderness_ms").asLong(),
        idle.isNumber() ? idle.asLong() : null);
    for (JsonNode p : c.path("partitions").path(0)) {
      marks.assign(p.asInt(), now);
    }
    tickMs = c.path("tick_ms").asLong(1000);
    nextTick = now + tickMs;
    JsonNode ends = c.path("ends");
    if (ends.isArray()) {
      pending = new HashMap<>();
      for (int i = 0; i < ends.size(); i++) {
        for (Map.Entry<String, JsonNode> e : iterable(ends.get(i))) {
          if (e.getValue().asLong() > 0) {
            pending.put(where(i, Integer.parseInt(e.getKey())), e.getValue().asLong() - 1);
          }
        }
      }
    }
  }

  private static Iterable<Map.Entry<String, JsonNode>> iterable(JsonNode node) {
    return node::fields;
  }

  private static long where(int input, int partition) {
    return ((long) input << 32) | (partition & 0xffffffffL);
  }

  private void count(String name) {
    counts.merge(name, 1L, Long::sum);
  }

  /** One input row at processing time {@code now}: what to write (often nothing). */
  public List<Out> row(int src, int partition, long offset, byte[] value, long now) {
    List<Out> out = new ArrayList<>(0);
    if (now >= nextTick) {
      nextTick = now + tickMs;
      tick(now, out);
    }
    if (src == TICK) {
      return out;
    }
    if (records == 0) {
      firstMs = now;
      gcMsAtFirst = gcMs();
      cpuNsAtFirst = cpuNs();
    }
    if (records % MARK_EVERY == 0) {
      int i = (int) (records / MARK_EVERY);
      if (i == marksMs.length) {
        marksMs = Arrays.copyOf(marksMs, 2 * i);
      }
      marksMs[i] = now;
    }
    records++;
    lastMs = now;
    one(src, partition, offset, value, now, out);
    if (pending != null) {
      Long last = pending.get(where(src, partition));
      if (last != null && last <= offset) {
        pending.remove(where(src, partition));
        if (pending.isEmpty()) {
          end(now, out);
        }
      }
    }
    return out;
  }

  /** Processing time passed: idle partitions stop holding the watermark back. */
  private void tick(long now, List<Out> out) {
    if (marks.candidate(now) > stats.watermark) {
      advance(now, out);
    }
  }

  private void advance(long now, List<Out> out) {
    long wm = marks.candidate(now);
    marks.value = wm;
    rows(stats.advance(wm, now), out);
  }

  /** The rows to write, and for the Python engine's anomaly-rate trigger, a {@code rate}
   * output at each {@code device_type} row's first firing (it judges a window once). */
  private static void rows(List<FleetStats.StatsRow> rows, List<Out> out) {
    for (FleetStats.StatsRow r : rows) {
      byte[] key = r.key().getBytes(StandardCharsets.UTF_8);
      out.add(new Out("stats", key, r.json().getBytes(StandardCharsets.UTF_8), null, r.scope));
      if (r.first && "device_type".equals(r.scope)) {
        out.add(new Out("rate", key, r.rateJson().getBytes(StandardCharsets.UTF_8), null,
            r.scope));
      }
    }
  }

  private void one(int src, int partition, long offset, byte[] value, long now, List<Out> out) {
    long t0 = System.nanoTime();
    Object[] record;
    try {
      record = src == 0 ? summaries.decode(value) : alert(value);
    } catch (BadRecord e) {
      out.add(dead(src, partition, offset, value, e.reason, e.reason + ": " + e.getMessage()));
      return;
    }
    long t1 = System.nanoTime();
    decodeNs += t1 - t0;
    try {
      if (src == 0) {
        summary(record, partition, offset, now, out);
      } else {
        alert(record);
      }
      engineNs += System.nanoTime() - t1;
    } catch (Invalid e) { // decodable, but not a record of this topic
      out.add(dead(src, partition, offset, value, "invalid_record",
          "not a record of " + topics[src] + ": " + e.getMessage()));
    }
  }

  /** A decodable record that lacks what its topic's records have. */
  private static final class Invalid extends RuntimeException {
    Invalid(String message) {
      super(message, null, false, false);
    }
  }

  private static Object need(Object[] record, int slot, String name) {
    Object v = record[slot];
    if (v == null) {
      throw new Invalid("no " + name);
    }
    return v;
  }

  private void summary(Object[] r, int partition, long offset, long now, List<Out> out) {
    FleetStats.Summary s = new FleetStats.Summary();
    s.windowStart = (Long) need(r, WINDOW_START, "window_start");
    long end = (Long) need(r, WINDOW_END, "window_end");
    s.count = (Long) need(r, COUNT, "count");
    s.scopeKey = String.valueOf(r[SCOPE_KEY]);
    s.site = String.valueOf(r[SITE]);
    s.deviceType = String.valueOf(r[DEVICE_TYPE]);
    s.anomalies = r[ANOMALY_COUNT] == null ? 0 : (Long) r[ANOMALY_COUNT];
    s.maxScore = (Double) r[MAX_SCORE];
    s.modelVersion = (String) r[MODEL_VERSION];
    DecodeSummary.Channels c = (DecodeSummary.Channels) r[CHANNEL_NAMES];
    int n = c.size;
    s.channels = c.names; // (its first n)
    s.counts = new long[n];
    s.sums = c.values[1];
    s.m2 = c.values[2];
    for (int i = 0; i < n; i++) {
      if (!c.present[0][i]) {
        throw new Invalid("channel " + s.channels[i] + " has no count");
      }
      s.counts[i] = (long) c.values[0][i];
      if (s.counts[i] > 0 && (!c.present[1][i] || !c.present[2][i])) {
        throw new Invalid("channel " + s.channels[i] + " has no sum or m2");
      }
    }
    String sid = (String) r[SUMMARY_ID];
    String scope = (String) r[SCOPE];
    String rid = sid != null ? sid : r[GATEWAY_ID] + "|" + scope + "|" + s.scopeKey + "|"
        + s.windowStart + "|" + end;
    if (!dedup.accept((String) r[GATEWAY_ID], (Long) r[GATEWAY_SEQ], rid)) {
      count("duplicates");
      return;
    }
    Integer level = (Integer) r[ROLLUP_LEVEL];
    long lineage = FleetStats.lineage(sid, s.windowStart, end, level);
    count("summaries_" + stats.addSummary(s, scope, lineage));
    marks.observe(partition, s.windowStart, now);
    if (marks.candidate(now) > stats.watermark) {
      advance(now, out);
    }
  }

  private void alert(Object[] a) {
    String status = a[2] == null ? "open" : (String) a[2];
    if (!dedup.accept((String) a[4], a[5] == null ? null : ((Number) a[5]).longValue(),
        alertId(a, status))) {
      count("duplicates");
      return;
    }
    if ("open".equals(status) && a[10] == null) {
      throw new Invalid("an open alert without ts");
    }
    long ts = a[10] == null ? 0 : ((Number) a[10]).longValue();
    count("alerts_" + stats.addAlert(status, ts, String.valueOf(a[6]), String.valueOf(a[8])));
  }

  /** An alert's id: its alert_id, else {@code incident_id|n} (see
   * {@code edgestream.wire.ids.alert_id}); null when it cannot be derived. */
  private static String alertId(Object[] a, String status) {
    if (a[0] != null) {
      return (String) a[0];
    }
    String n;
    if (status.equals("open")) {
      n = "0";
    } else if (status.equals("resolved")) {
      n = "resolved";
    } else if (a[3] != null) {
      n = String.valueOf(((Number) a[3]).longValue());
    } else {
      return null;
    }
    String incident = (String) a[1];
    if (incident == null) {
      Object first = a[11] != null ? a[11] : a[10];
      if (a[9] == null || first == null) {
        return null;
      }
      String rule = CONSECUTIVE.matcher((String) a[9]).replaceFirst("");
      incident = a[4] + "|" + a[7] + "|" + rule + "|" + ((Number) first).longValue();
    }
    return incident + "|" + n;
  }

  /** The fields {@link #ALERT_FIELDS} of a Confluent-framed AnomalyAlert. */
  private Object[] alert(byte[] value) {
    int id = Registry.schemaId(value);
    int[] slots = alertPlans.get(id);
    if (slots == null) {
      BadRecord known = notAlerts.get(id);
      if (known != null) {
        throw known;
      }
      Schema schema = registry.schema(id);
      if (schema.getType() != Schema.Type.RECORD
          || !schema.getFullName().endsWith("AnomalyAlert")) {
        BadRecord e = new BadRecord("invalid_record",
            "schema id " + id + " writes " + schema.getFullName() + ", not an AnomalyAlert");
        notAlerts.put(id, e);
        throw e;
      }
      List<Schema.Field> fields = schema.getFields();
      slots = new int[fields.size()];
      for (int i = 0; i < slots.length; i++) {
        slots[i] = ALERT_FIELDS.indexOf(fields.get(i).name());
      }
      alertPlans.put(id, slots);
    }
    List<Schema.Field> fields = registry.schema(id).getFields();
    Object[] out = new Object[ALERT_FIELDS.size()];
    try {
      AvroInput in = alerts.start(value);
      for (int i = 0; i < slots.length; i++) {
        if (slots[i] < 0) {
          in.skip(fields.get(i).schema());
        } else {
          out[slots[i]] = in.read(fields.get(i).schema());
        }
      }
      in.end();
    } catch (IOException | RuntimeException e) { // a corrupt body
      throw AvroInput.corrupt(e);
    }
    for (int k = 0; k < out.length; k++) {
      boolean number = k == 3 || k == 5 || k == 10 || k == 11;
      if (out[k] != null && (number ? !(out[k] instanceof Number) : !(out[k] instanceof String))) {
        throw new BadRecord("invalid_record",
            "field " + ALERT_FIELDS.get(k) + " is a " + out[k].getClass().getSimpleName());
      }
    }
    return out;
  }

  private Out dead(int src, int partition, long offset, byte[] value, String reason,
      String detail) {
    String topic = topics[src];
    long dlq = counts.getOrDefault("dlq", 0L);
    if (dlq < 10) {
      LOG.warn("{}[{}]@{} to the DLQ: {}", topic, partition, offset, detail);
    }
    count("dlq");
    count("dlq_" + reason);
    StringBuilder h = new StringBuilder("{\"reason\":");
    Json.string(h, reason);
    h.append(",\"detail\":");
    Json.string(h, detail.length() > 1000 ? detail.substring(0, 1000) : detail);
    h.append(",\"topic\":");
    Json.string(h, topic);
    h.append(",\"partition\":\"").append(partition).append("\",\"offset\":\"").append(offset)
        .append("\"}");
    byte[] key = (topic + "|" + partition + "|" + offset).getBytes(StandardCharsets.UTF_8);
    return new Out("dlq", key, value == null ? new byte[0] : value, h.toString(), null);
  }

  /** The end of a bounded input: every window closes, then the run's counts. */
  private void end(long now, List<Out> out) {
    LOG.info("fleet statistics: end of input after {} records", records);
    rows(stats.flush(now), out);
    StringBuilder b = new StringBuilder("{\"records\":").append(records);
    b.append(",\"span_ms\":").append(Math.max(lastMs - firstMs, 1));
    // [records done, ms since the first] at each tenth of the run (the marks at or before)
    b.append(",\"progress\":[");
    for (int k = 1; k <= 10; k++) {
      int i = (int) (records * k / 10 / MARK_EVERY);
      long done = k == 10 ? records : (long) i * MARK_EVERY;
      long ms = k == 10 ? lastMs - firstMs : marksMs[i] - firstMs;
      b.append(k == 1 ? "[" : ",[").append(done).append(',').append(ms).append(']');
    }
    b.append(']');
    for (Map.Entry<String, Long> e : counts.entrySet()) {
      b.append(',');
      Json.string(b, e.getKey());
      b.append(':').append((long) e.getValue());
    }
    b.append(",\"decode_ms\":").append(decodeNs / 1_000_000);
    b.append(",\"engine_ms\":").append(engineNs / 1_000_000);
    // where the span went besides this thread's work: the JVM's garbage collectors (all
    // threads, pauses and concurrent work) and this thread's CPU time
    b.append(",\"gc_ms\":").append(gcMs() - gcMsAtFirst);
    b.append(",\"cpu_ms\":").append((cpuNs() - cpuNsAtFirst) / 1_000_000).append('}');
    out.add(new Out("meta", "meta".getBytes(StandardCharsets.UTF_8),
        b.toString().getBytes(StandardCharsets.UTF_8), null, null));
  }

  private static long gcMs() {
    long total = 0;
    for (GarbageCollectorMXBean gc : ManagementFactory.getGarbageCollectorMXBeans()) {
      total += Math.max(gc.getCollectionTime(), 0);
    }
    return total;
  }

  private static long cpuNs() {
    ThreadMXBean threads = ManagementFactory.getThreadMXBean();
    return threads.isCurrentThreadCpuTimeSupported() ? threads.getCurrentThreadCpuTime() : 0;
  }

  /** Per-partition watermarks: {@code max event time - max out-of-orderness}, the minimum over
   * the partitions not idle (as {@code edgestream.edge.watermarks.Watermarks}). */
  static final class Watermarks {
    private final long outOfOrderness;
    private final Long idleTimeout;
    private final Map<Integer, long[]> partitions = new LinkedHashMap<>(); // max ts, last active
    private static final long NONE = Long.MIN_VALUE;
    long value = FleetStats.MIN_WATERMARK;

    Watermarks(long outOfOrderness, Long idleTimeout) {
      this.outOfOrderness = outOfOrderness;
      this.idleTimeout = idleTimeout;
    }

    void assign(int partition, long now) {
      partitions.putIfAbsent(partition, new long[] {NONE, now});
    }

    void observe(int partition, long ts, long now) {
      long[] p = partitions.get(partition);
      if (p == null) {
        partitions.put(partition, new long[] {ts, now});
        return;
      }
      p[0] = p[0] == NONE ? ts : Math.max(p[0], ts);
      p[1] = Math.max(p[1], now);
    }

    long candidate(long now) {
      boolean any = false;
      long min = Long.MAX_VALUE;
      for (long[] p : partitions.values()) {
        if (idleTimeout == null || now - p[1] < idleTimeout) {
          any = true;
          min = Math.min(min, p[0] == NONE ? FleetStats.MIN_WATERMARK : p[0] - outOfOrderness);
        }
      }
      return any ? Math.max(value, min) : value;
    }
  }

  /** Replays dropped by (gateway_id, gateway_seq), else by record id (as
   * {@code edgestream.wire.dedup.Deduplicator}: a window of 4M seqs per gateway, the 64-bit
   * hashes of the last 100,000 ids; the configuration's {@code dedup_window} and
   * {@code dedup_id_memory} change them). */
  static final class Dedup {
    static final int WINDOW = 1 << 22;
    static final int ID_MEMORY = 100_000;
    private final int window;
    private final Map<String, long[]> seqs = new HashMap<>(); // gateway -> [high, bits...]
    private final IdMemory ids;

    Dedup(int window, int idMemory) {
      this.window = window;
      ids = idMemory > 0 ? new IdMemory(idMemory) : null;
    }

    /** True: new; False: seen; null: older than the window. */
    private Boolean add(long[] w, long seq) {
      long high = w[0];
      if (seq > high) {
        if (seq - high >= window) {
          Arrays.fill(w, 1, w.length, 0L);
        } else {
          for (long s = high + 1; s < seq; s++) {
            flip(w, s, false);
          }
        }
        w[0] = seq;
        flip(w, seq, true);
        return true;
      }
      if (seq <= high - window) {
        return null;
      }
      return !flip(w, seq, true);
    }

    private boolean flip(long[] w, long seq, boolean on) {
      int i = (int) Math.floorMod(seq, (long) window);
      int word = 1 + (i >>> 6);
      long mask = 1L << (i & 63);
      boolean was = (w[word] & mask) != 0;
      w[word] = on ? w[word] | mask : w[word] & ~mask;
      return was;
    }

    boolean accept(String gateway, Long seq, String rid) {
      Boolean verdict = null;
      if (gateway != null && seq != null) {
        verdict = add(seqs.computeIfAbsent(gateway, g -> new long[1 + (window + 63) / 64]), seq);
      }
      boolean freshId = rid == null || ids == null || ids.add(hash(rid));
      if (verdict == null) {
        return freshId;
      }
      return verdict && freshId;
    }
  }

  /** A 64-bit hash of a record id (FNV-1a over its chars, then MurmurHash3's finalizer): two
   * of 100,000 remembered ids collide with a chance of about 3e-10. Never 0. */
  static long hash(String id) {
    long h = 0xcbf29ce484222325L;
    for (int i = 0; i < id.length(); i++) {
      h = (h ^ id.charAt(i)) * 0x100000001b3L;
    }
    h ^= h >>> 33;
    h *= 0xff51afd7ed558ccdL;
    h ^= h >>> 33;
    h *= 0xc4ceb9fe1a85ec53L;
    h ^= h >>> 33;
    return h == 0 ? 1 : h;
  }

  /** The last {@code capacity} distinct hashes, oldest forgotten first (insertion order: a hash
   * seen again keeps its place, as a Python dict's keys do): a ring of them and an
   * open-addressing table (linear probing, 0 = empty), no object per id. */
  static final class IdMemory {
    private final long[] ring;
    private int next;
    private int size;
    private final long[] table;
    private final int mask;

    IdMemory(int capacity) {
      ring = new long[capacity];
      table = new long[Integer.highestOneBit(Math.max(capacity, 2) * 2) * 2]; // load <= 1/2
      mask = table.length - 1;
    }

    private int home(long h) {
      return (int) (h ^ (h >>> 32)) & mask;
    }

    /** True when {@code h} was not remembered (it is now); false when it was. */
    boolean add(long h) {
      int i = home(h);
      for (; table[i] != 0; i = (i + 1) & mask) {
        if (table[i] == h) {
          return false;
        }
      }
      table[i] = h;
      if (size == ring.length) {
        remove(ring[next]);
      } else {
        size++;
      }
      ring[next] = h;
      next = (next + 1) % ring.length;
      return true;
    }

    /** Deletes a present hash, shifting back the entries its slot displaced. */
    private void remove(long h) {
      int i = home(h);
      while (table[i] != h) {
        i = (i + 1) & mask;
      }
      for (int j = (i + 1) & mask; table[j] != 0; j = (j + 1) & mask) {
        int k = home(table[j]);
        boolean stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (!stays) {
          table[i] = table[j];
          i = j;
        }
      }
      table[i] = 0;
    }
  }

  /**
   * Runs the statistics outside Flink, for tests and inspection: {@code args[0]} is the
   * configuration; each line of standard input is {@code src partition offset now_ms hex}
   * (a value; {@code -} for none); each output is one line of JSON on standard output:
   * {@code {"kind", "key", "value", "headers", "scope"}} (a DLQ value in hex).
   */
  public static void main(String[] args) throws Exception {
    BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
    PrintStream out = new PrintStream(System.out, false, StandardCharsets.UTF_8);
    FleetAnalytics engine = null;
    for (String line = in.readLine(); line != null; line = in.readLine()) {
      String[] f = line.trim().split(" ");
      if (f.length < 4) {
        continue;
      }
      long now = Long.parseLong(f[3]);
      if (engine == null) {
        engine = new FleetAnalytics(args[0], now);
      }
      byte[] value = f.length < 5 || f[4].equals("-") ? null : hex(f[4]);
      for (Out o : engine.row(Integer.parseInt(f[0]), Integer.parseInt(f[1]),
          Long.parseLong(f[2]), value, now)) {
        StringBuilder b = new StringBuilder("{\"kind\":");
        Json.string(b, o.kind());
        b.append(",\"key\":");
        Json.string(b, new String(o.key(), StandardCharsets.UTF_8));
        b.append(",\"value\":");
        Json.string(b, o.kind().equals("dlq") ? hex(o.value())
            : new String(o.value(), StandardCharsets.UTF_8));
        b.append(",\"headers\":");
        if (o.headers() == null) {
          b.append("null");
        } else {
          Json.string(b, o.headers());
        }
        b.append(",\"scope\":");
        if (o.scope() == null) {
          b.append("null");
        } else {
          Json.string(b, o.scope());
        }
        out.println(b.append('}'));
      }
    }
    out.flush();
  }

  private static byte[] hex(String s) {
    byte[] b = new byte[s.length() / 2];
    for (int i = 0; i < b.length; i++) {
      b[i] = (byte) Integer.parseInt(s.substring(2 * i, 2 * i + 2), 16);
    }
    return b;
  }

  private static String hex(byte[] b) {
    StringBuilder s = new StringBuilder(b.length * 2);
    for (byte x : b) {
      s.append(String.format("%02x", x & 0xff));
    }
    return s.toString();
  }
}
