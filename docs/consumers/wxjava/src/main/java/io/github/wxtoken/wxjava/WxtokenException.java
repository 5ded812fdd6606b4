package io.github.wxtoken.wxjava;

/** wxtoken could not give a token (the API refused or failed). Its message never carries a token. */
public class WxtokenException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  public WxtokenException(String message) {
    super(message);
  }
}
