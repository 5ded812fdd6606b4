package io.github.wxtoken.wxjava;

import me.chanjar.weixin.common.bean.WxAccessToken;
import me.chanjar.weixin.mp.config.impl.WxMpDefaultConfigImpl;

/**
 * A WxJava Official Account configuration whose access token comes from
 * wxtoken. Every path of WxJava's {@code BaseWxMpServiceImpl} (4.7.3.B) that
 * touches the token goes through it:
 *
 * <ul>
 *   <li>{@code getAccessToken(false)} returns {@link #getAccessToken()} because
 *       {@link #isAccessTokenExpired()} is always false: WxJava's own expiry
 *       clock (the {@code expires_in − 200 s} of {@code updateAccessToken}) is
 *       unused; wxtoken's {@code expires_at} and {@code rotates_at} decide.
 *   <li>the 40001/40014/42001 path of {@code executeInternal} calls
 *       {@link #expireAccessToken()}, which tells wxtoken that the token this
 *       thread was handed was rejected; WxJava's single retry then gets the
 *       token wxtoken's refresh route answers for it.
 *   <li>{@code updateAccessToken} is refused: only WeChat's token endpoint
 *       produces its arguments, and WxJava must not call it.
 * </ul>
 *
 * {@code getAccessToken(true)} skips the configuration and fetches from
 * WeChat: use {@link WxtokenMpService}, which sends it to wxtoken.
 */
public class WxtokenMpConfig extends WxMpDefaultConfigImpl {
  private static final long serialVersionUID = 1L;

  private final transient TokenBinding binding;

  /** A configuration of the Official Account {@code appId}, whose token wxtoken keeps as {@code wxtoken.app()}. */
  public WxtokenMpConfig(WxtokenClient wxtoken, String appId) {
    this.binding = new TokenBinding(wxtoken);
    setAppId(appId);
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
    return "WxtokenMpConfig{appId=" + getAppId() + ", wxtoken app=" + binding.wxtoken().app() + "}";
  }

}
