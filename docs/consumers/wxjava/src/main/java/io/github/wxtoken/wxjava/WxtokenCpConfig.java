package io.github.wxtoken.wxjava;

import me.chanjar.weixin.common.bean.WxAccessToken;
import me.chanjar.weixin.cp.config.impl.WxCpDefaultConfigImpl;

/**
 * A WxJava WeCom configuration whose access token comes from wxtoken, as
 * {@link WxtokenMpConfig} is for Official Accounts. WeCom's
 * {@code executeInternal} (4.7.3.B) calls {@link #expireAccessToken()} on
 * 40001/40014/42001 without checking that the rejected token is still the
 * current one; the token handed to this thread is what wxtoken is told, so
 * a token another thread already replaced is not refreshed twice.
 * {@code WxCpServiceImpl.getAccessToken(true)} fetches from WeChat's gettoken
 * without asking the configuration: use {@link WxtokenCpService}.
 */
public class WxtokenCpConfig extends WxCpDefaultConfigImpl {
  private static final long serialVersionUID = 1L;

  private final transient TokenBinding binding;

  /** A configuration of the WeCom application of {@code corpId}, whose token wxtoken keeps as {@code wxtoken.app()}. */
  public WxtokenCpConfig(WxtokenClient wxtoken, String corpId) {
    this.binding = new TokenBinding(wxtoken);
    setCorpId(corpId);
  }

  /** The wxtoken client. */
  public WxtokenClient wxtoken() {
    return binding.wxtoken();
  }

  @Override
  public String getAccessToken() {
    return binding.token();
  }

  @Override
  public boolean isAccessTokenExpired() {
    return false;
  }

  @Override
  public void expireAccessToken() {
    binding.reject();
  }

  /** Replaces the token last handed to this thread through wxtoken now (forced refresh). */
  public String refreshAccessToken() {
    return binding.refresh();
  }

  @Override
  public synchronized void updateAccessToken(WxAccessToken accessToken) {
    throw binding.refuseUpdate();
  }

  @Override
  public synchronized void updateAccessToken(String accessToken, int expiresInSeconds) {
    throw binding.refuseUpdate();
  }

  @Override
  public String toString() {
    return "WxtokenCpConfig{corpId=" + getCorpId() + ", wxtoken app=" + binding.wxtoken().app() + "}";
  }
}
