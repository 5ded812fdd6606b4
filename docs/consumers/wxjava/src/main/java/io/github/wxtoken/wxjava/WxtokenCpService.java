package io.github.wxtoken.wxjava;

import me.chanjar.weixin.common.error.WxErrorException;
import me.chanjar.weixin.cp.api.impl.WxCpServiceImpl;
import me.chanjar.weixin.cp.config.WxCpConfigStorage;

/**
 * WxJava's WeCom service with wxtoken as the only source of access tokens.
 * {@code WxCpServiceImpl.getAccessToken(boolean)} is where WxJava calls
 * gettoken, and with {@code forceRefresh} it does so without asking the
 * configuration; here a forced refresh asks wxtoken's refresh route instead
 * and gettoken is never called.
 */
public class WxtokenCpService extends WxCpServiceImpl {
  @Override
  public String getAccessToken(boolean forceRefresh) throws WxErrorException {
    WxCpConfigStorage c = getWxCpConfigStorage();
    if (!(c instanceof WxtokenCpConfig config)) {
      throw new IllegalStateException("WxtokenCpService needs a WxtokenCpConfig, not " + (c == null ? "none" : c.getClass().getName()));
    }
    return forceRefresh ? config.refreshAccessToken() : config.getAccessToken();
  }
}
