package io.github.wxtoken.wxjava;

import me.chanjar.weixin.common.error.WxErrorException;
import me.chanjar.weixin.mp.api.impl.WxMpServiceImpl;
import me.chanjar.weixin.mp.config.WxMpConfigStorage;

/**
 * WxJava's Official Account service with wxtoken as the only source of
 * access tokens. {@link WxtokenMpConfig} alone covers every path WxJava takes
 * by itself; this subclass adds the one a configuration cannot reach:
 * {@code getAccessToken(true)} (a forced refresh) goes to WeChat's token
 * endpoint without asking the configuration, so here it asks wxtoken's
 * refresh route instead, and the token endpoint is made unreachable.
 */
public class WxtokenMpService extends WxMpServiceImpl {
  @Override
  public String getAccessToken(boolean forceRefresh) throws WxErrorException {
    WxtokenMpConfig config = config();
    return forceRefresh ? config.refreshAccessToken() : config.getAccessToken();
  }

  @Override
  protected String doGetAccessTokenRequest() {
    throw new IllegalStateException("wxtoken publishes this app's access token; WxJava must not fetch it");
  }

  @Override
  protected String doGetStableAccessTokenRequest(boolean forceRefresh) {
    throw new IllegalStateException("wxtoken publishes this app's access token; WxJava must not fetch it");
  }

  private WxtokenMpConfig config() {
    WxMpConfigStorage c = getWxMpConfigStorage();
    if (c instanceof WxtokenMpConfig w) {
      return w;
    }
    throw new IllegalStateException("WxtokenMpService needs a WxtokenMpConfig, not " + (c == null ? "none" : c.getClass().getName()));
  }
}
