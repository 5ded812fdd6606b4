package io.github.wxtoken.wxjava;

/**
 * What a WxJava configuration ({@link WxtokenMpConfig}, {@link WxtokenCpConfig})
 * does with wxtoken's token: it hands a thread the current token and
 * remembers which, so that when WeChat rejects it, wxtoken is told exactly
 * that token (compare-and-refresh: a token another thread already replaced
 * is not refreshed twice).
 */
final class TokenBinding {
  private final WxtokenClient wxtoken;
  private final ThreadLocal<String> handedOut = new ThreadLocal<>();

  TokenBinding(WxtokenClient wxtoken) {
    this.wxtoken = wxtoken;
  }

  WxtokenClient wxtoken() {
    return wxtoken;
  }

  /** The current token, remembered as this thread's. */
  String token() {
    String token = wxtoken.token();
    handedOut.set(token);
    return token;
  }

  /** Tells wxtoken that WeChat rejected the token this thread was handed. */
  void reject() {
    wxtoken.reject(handedOut.get());
  }

  /** Replaces the token this thread was handed through wxtoken now (forced refresh). */
  String refresh() {
    String token = wxtoken.refresh(handedOut.get());
    handedOut.set(token);
    return token;
  }

  /** The refusal of WxJava's updateAccessToken: only WeChat's token endpoint produces its arguments. */
  UnsupportedOperationException refuseUpdate() {
    return new UnsupportedOperationException("wxtoken publishes app " + wxtoken.app() + "'s access token; WxJava must not fetch it");
  }
}
