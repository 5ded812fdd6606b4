package io.github.wxtoken.wxjava;

import com.google.gson.Gson;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ThreadLocalRandom;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import software.amazon.awssdk.auth.credentials.AwsCredentialsProvider;
import software.amazon.awssdk.auth.credentials.DefaultCredentialsProvider;
import software.amazon.awssdk.http.ContentStreamProvider;
import software.amazon.awssdk.http.SdkHttpFullRequest;
import software.amazon.awssdk.http.SdkHttpMethod;
import software.amazon.awssdk.http.SdkHttpRequest;
import software.amazon.awssdk.http.auth.aws.signer.AwsV4HttpSigner;
import software.amazon.awssdk.http.urlconnection.UrlConnectionHttpClient;
import software.amazon.awssdk.regions.Region;
import software.amazon.awssdk.regions.providers.DefaultAwsRegionProviderChain;
import software.amazon.awssdk.services.ssm.SsmClient;
import software.amazon.awssdk.services.ssm.model.GetParametersResponse;
import software.amazon.awssdk.services.ssm.model.Parameter;

/**
 * The access token wxtoken publishes for one app, read and refreshed as
 * wxtoken's consumer rule says ("read only when something can have changed"):
 *
 * <ol>
 *   <li>The token and its {@code _meta} sibling are read in one SSM
 *       GetParameters. The value is kept until {@code rotates_at} + 60 s + a
 *       random jitter of up to 60 s, never past {@code expires_at} − 120 s;
 *       without usable meta (absent, of another version, or a rotation
 *       already late) for 60 s.
 *   <li>When WeChat rejects the token (40001, 40014, 42001) the caller says
 *       so with {@link #reject}; the next {@link #token} asks the API's
 *       refresh route with the rejected value (compare-and-refresh) and keeps
 *       the answer. One rejection, one refresh request.
 *   <li>When the parameter is missing or the value read is within 120 s of
 *       its expiry, the refresh route is asked with no stale value and its
 *       answer kept at least 60 s; a 429's token is kept and its Retry-After
 *       honoured.
 * </ol>
 *
 * <p>SSM and the signature use the stack's region, taken from the API's URL
 * ({@code {id}.execute-api.{region}.amazonaws.com}) or else the configured
 * one. Endpoints follow the AWS SDK's own configuration
 * ({@code AWS_ENDPOINT_URL_SSM}, {@code AWS_ENDPOINT_URL}); credentials come
 * from the default provider chain. Thread-safe; share one per app.
 *
 * <p>No message of this class carries a token.
 */
public final class WxtokenClient implements AutoCloseable {
  static final Duration KEEP = Duration.ofSeconds(60);
  static final Duration JITTER = Duration.ofSeconds(60);
  static final Duration EXPIRY_MARGIN = Duration.ofSeconds(120);

  private static final Pattern API_HOST =
      Pattern.compile("^[a-z0-9]+\\.execute-api\\.([a-z0-9-]+)\\.amazonaws\\.com(\\.cn)?$");
  // Headers java.net.http sets itself and refuses to be given.
  private static final Set<String> RESTRICTED = Set.of("host", "content-length", "connection", "expect", "upgrade");
  private static final Gson GSON = new Gson();

  private final String apiUrl;
  private final String app;
  private final String name;
  private final String metaName;
  private final Region region;
  private final SsmClient ssm;
  private final boolean ownSsm;
  private final AwsCredentialsProvider credentials;
  private final HttpClient http;
  private final Clock clock;
  private final AwsV4HttpSigner signer = AwsV4HttpSigner.create();

  // Guarded by this.
  private Entry cached;
  private String rejected;
  private Instant refreshNotBefore = Instant.MIN;

  private record Entry(String value, Instant expiresAt, Instant keepUntil) {}

  private WxtokenClient(Builder b) {
    this.apiUrl = b.apiUrl.replaceAll("/+$", "");
    this.app = b.app;
    this.name = b.prefix.replaceAll("/+$", "") + "/" + b.app + "/access_token";
    this.metaName = this.name + "_meta";
    Region r = regionOf(this.apiUrl);
    if (r == null) {
      r = b.region != null ? b.region : new DefaultAwsRegionProviderChain().getRegion();
    }
    this.region = r;
    this.credentials = b.credentials != null ? b.credentials : DefaultCredentialsProvider.builder().build();
    this.ownSsm = b.ssm == null;
    this.ssm = b.ssm != null ? b.ssm : SsmClient.builder()
        .region(region)
        .credentialsProvider(credentials)
        .httpClientBuilder(UrlConnectionHttpClient.builder())
        .build();
    this.http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
    this.clock = b.clock;
  }

  /** A builder for the app {@code app} of the wxtoken stack whose API is at {@code apiUrl}. */
  public static Builder builder(String apiUrl, String app) {
    return new Builder(apiUrl, app);
  }

  /** The stack's region in an API Gateway URL, or null. */
  static Region regionOf(String apiUrl) {
    String host = URI.create(apiUrl).getHost();
    if (host == null) {
      return null;
    }
    Matcher m = API_HOST.matcher(host);
    return m.matches() ? Region.of(m.group(1)) : null;
  }

  /** The app's name in wxtoken. */
  public String app() {
    return app;
  }

  /** The region used for SSM and for signing. */
  public Region region() {
    return region;
  }

  /** The token to use now (rules 1 and 3; rule 2 when {@link #reject} was told). */
  public synchronized String token() {
    Instant now = clock.instant();
    if (cached != null && cached.value.equals(rejected)) {
      return refreshLocked(rejected, now);
    }
    if (cached != null && now.isBefore(cached.keepUntil)) {
      return cached.value;
    }
    Entry read = read(now);
    if (read == null || read.expiresAt != null && !now.isBefore(read.expiresAt.minus(EXPIRY_MARGIN))) {
      if (read != null && now.isBefore(refreshNotBefore)) {
        cached = new Entry(read.value, read.expiresAt, max(read.keepUntil, now.plus(KEEP)));
        return read.value;
      }
      return refreshLocked(null, now);
    }
    cached = read;
    return read.value;
  }

  /**
   * Tells the client that WeChat rejected {@code token}. If it is the value
   * the client holds, the next {@link #token} replaces it through the API's
   * refresh route; a token already replaced is ignored.
   */
  public synchronized void reject(String token) {
    if (token != null && cached != null && token.equals(cached.value)) {
      rejected = token;
    }
  }

  /**
   * Asks the refresh route now for a token to replace {@code stale} (null:
   * the value held, if any) and returns the answer. Within a Retry-After the
   * API gave, the value held is returned without a request.
   */
  public synchronized String refresh(String stale) {
    Instant now = clock.instant();
    if (stale == null && cached != null) {
      stale = cached.value;
    }
    return refreshLocked(stale, now);
  }

  private String refreshLocked(String stale, Instant now) {
    if (now.isBefore(refreshNotBefore)) {
      if (cached != null) {
        return cached.value;
      }
      throw new WxtokenException("wxtoken: app " + app + ": the API asked to wait until " + refreshNotBefore);
    }
    byte[] body = (stale == null ? "{}" : GSON.toJson(Map.of("stale_token", stale))).getBytes(StandardCharsets.UTF_8);
    HttpResponse<String> resp = post(URI.create(apiUrl + "/v1/apps/" + app + "/refresh"), body);
    JsonObject answer = parse(resp.body());
    resp.headers().firstValue("Retry-After").ifPresent(v -> refreshNotBefore = now.plusSeconds(seconds(v)));
    String token = string(answer, "access_token");
    if ((resp.statusCode() == 200 || resp.statusCode() == 429) && token != null && !token.isEmpty()) {
      Instant expiresAt = instant(answer, "expires_at");
      Instant keep = max(keepUntil(now, expiresAt, instant(answer, "rotates_at")), now.plus(KEEP));
      cached = new Entry(token, expiresAt, keep);
      rejected = null;
      return token;
    }
    JsonObject err = answer.has("error") && answer.get("error").isJsonObject() ? answer.getAsJsonObject("error") : new JsonObject();
    String code = string(err, "code");
    String message = string(err, "message");
    if (message == null) {
      message = string(answer, "message"); // API Gateway's own refusals
    }
    throw new WxtokenException("wxtoken: refresh of app " + app + " answered HTTP " + resp.statusCode()
        + (code != null ? " " + code : "") + (message != null ? ": " + message : ""));
  }

  /** Rule 1: how long a value read at now may be kept. */
  static Instant keepUntil(Instant now, Instant expiresAt, Instant rotatesAt) {
    Instant keep = now.plus(KEEP);
    if (rotatesAt != null && expiresAt != null && rotatesAt.isAfter(now)) {
      long jitterMillis = ThreadLocalRandom.current().nextLong(JITTER.toMillis() + 1);
      keep = rotatesAt.plus(KEEP).plusMillis(jitterMillis);
    }
    if (expiresAt != null && keep.isAfter(expiresAt.minus(EXPIRY_MARGIN))) {
      keep = expiresAt.minus(EXPIRY_MARGIN);
    }
    return keep;
  }

  /** Reads the token and its meta in one GetParameters; null when the token is missing. */
  private Entry read(Instant now) {
    GetParametersResponse out = ssm.getParameters(r -> r.names(name, metaName).withDecryption(true));
    Parameter token = null;
    Parameter meta = null;
    for (Parameter p : out.parameters()) {
      if (name.equals(p.name())) {
        token = p;
      } else if (metaName.equals(p.name())) {
        meta = p;
      }
    }
    if (token == null) {
      return null;
    }
    Instant expiresAt = null;
    Instant rotatesAt = null;
    if (meta != null) {
      try {
        JsonObject m = JsonParser.parseString(meta.value()).getAsJsonObject();
        if (m.has("version") && m.get("version").getAsLong() == token.version()) {
          expiresAt = instant(m, "expires_at");
          rotatesAt = instant(m, "rotates_at");
        }
      } catch (RuntimeException e) {
        // Unusable meta: the 60 s rule.
      }
    }
    return new Entry(token.value(), expiresAt, keepUntil(now, expiresAt, rotatesAt));
  }

  private HttpResponse<String> post(URI uri, byte[] body) {
    SdkHttpFullRequest unsigned = SdkHttpFullRequest.builder()
        .method(SdkHttpMethod.POST)
        .uri(uri)
        .putHeader("Content-Type", "application/json")
        .build();
    SdkHttpRequest signed = signer.sign(r -> r
        .identity(credentials.resolveCredentials())
        .request(unsigned)
        .payload(ContentStreamProvider.fromByteArray(body))
        .putProperty(AwsV4HttpSigner.SERVICE_SIGNING_NAME, "execute-api")
        .putProperty(AwsV4HttpSigner.REGION_NAME, region.id()))
        .request();
    HttpRequest.Builder req = HttpRequest.newBuilder(uri)
        .timeout(Duration.ofSeconds(30))
        .POST(HttpRequest.BodyPublishers.ofByteArray(body));
    signed.forEachHeader((k, values) -> {
      if (!RESTRICTED.contains(k.toLowerCase(java.util.Locale.ROOT))) {
        values.forEach(v -> req.header(k, v));
      }
    });
    try {
      return http.send(req.build(), HttpResponse.BodyHandlers.ofString());
    } catch (IOException e) {
      throw new UncheckedIOException("wxtoken: refresh of app " + app + ": " + e.getMessage(), e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new WxtokenException("wxtoken: refresh of app " + app + " interrupted");
    }
  }

  private static JsonObject parse(String body) {
    try {
      JsonElement e = JsonParser.parseString(body);
      return e.isJsonObject() ? e.getAsJsonObject() : new JsonObject();
    } catch (RuntimeException e) {
      return new JsonObject();
    }
  }

  private static String string(JsonObject o, String key) {
    JsonElement e = o.get(key);
    return e != null && e.isJsonPrimitive() ? e.getAsString() : null;
  }

  private static Instant instant(JsonObject o, String key) {
    String s = string(o, key);
    try {
      return s == null ? null : Instant.parse(s);
    } catch (RuntimeException e) {
      return null;
    }
  }

  private static long seconds(String retryAfter) {
    try {
      return Math.max(0, Long.parseLong(retryAfter.trim()));
    } catch (NumberFormatException e) {
      return 1;
    }
  }

  private static Instant max(Instant a, Instant b) {
    return a.isAfter(b) ? a : b;
  }

  @Override
  public void close() {
    if (ownSsm) {
      ssm.close();
    }
  }

  /** Options of a {@link WxtokenClient}. */
  public static final class Builder {
    private final String apiUrl;
    private final String app;
    private String prefix = "/wxtoken";
    private Region region;
    private AwsCredentialsProvider credentials;
    private SsmClient ssm;
    private Clock clock = Clock.systemUTC();

    private Builder(String apiUrl, String app) {
      this.apiUrl = apiUrl;
      this.app = app;
    }

    /** The stack's parameter prefix (default {@code /wxtoken}). */
    public Builder prefix(String prefix) {
      this.prefix = prefix;
      return this;
    }

    /** The stack's region when the API URL does not name it (default: the SDK's region chain). */
    public Builder region(Region region) {
      this.region = region;
      return this;
    }

    /** Credentials for SSM and the signature (default: the SDK's default chain). */
    public Builder credentials(AwsCredentialsProvider credentials) {
      this.credentials = credentials;
      return this;
    }

    /** An SSM client of the stack's region (default: one built for it). */
    public Builder ssm(SsmClient ssm) {
      this.ssm = ssm;
      return this;
    }

    /** The clock (tests). */
    public Builder clock(Clock clock) {
      this.clock = clock;
      return this;
    }

    public WxtokenClient build() {
      return new WxtokenClient(this);
    }
  }
}
